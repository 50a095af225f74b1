// The console's only script, served from the binary (no inline script: the
// Content-Security-Policy forbids it). Forms with data-confirm ask first.
document.addEventListener("submit", (event) => {
  const question = event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});
