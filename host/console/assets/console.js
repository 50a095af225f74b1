// The console's only script, served from the binary (no inline script: the
// Content-Security-Policy forbids it). Forms with data-confirm ask first.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// A file input with data-fills="NAME" puts the chosen file's text into the
// form's field NAME (a CSV uploaded into the user map's box); without
// script the box is filled by hand.
document.addEventListener("change", (event) => {
  const input = event.target;
  const field = input.dataset && input.dataset.fills;
  if (input.type !== "file" || !field || input.files.length === 0) {
    return;
  }
  input.files[0].text().then((text) => {
    input.form.elements[field].value = text;
  });
});
