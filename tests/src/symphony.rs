//! A connector file running the Symphony plugin against a simulator.

use std::path::{Path, PathBuf};

use symphony_sim::{TEST_PRIVATE_KEY_PEM, TEST_USERNAME};

/// What differs between the Symphony connectors of the tests and benches.
#[derive(Debug, Clone)]
pub struct SymphonyConnector<'a> {
    /// The connector id.
    pub id: &'a str,
    /// The simulator's base URL (pod, agent and key manager alike).
    pub base: &'a str,
    /// Retries of a failed page.
    pub retries: u32,
    /// Messages per page.
    pub page_size: u32,
    /// The mapped domain.
    pub domain: &'a str,
    /// The `[sink]` table, header included.
    pub sink: &'a str,
    /// More lines for the secrets file (sink credentials).
    pub extra_secrets: &'a str,
}

/// Writes the operator's secrets file `dir/secrets.toml` (0600, as
/// `scripts/demo` does): the simulator's service-account private key as
/// `private-key`, then the `extra` lines (sink credentials). Returns its
/// path.
pub fn write_symphony_secrets(dir: &Path, extra: &str) -> PathBuf {
    crate::write_secrets(
        dir,
        &format!(
            "private-key = '''\n{}'''\n{extra}",
            TEST_PRIVATE_KEY_PEM.trim_end()
        ),
    )
}

/// Installs the Symphony plugin under `dir/plugin` and writes
/// `dir/connector.toml` for `c`, with the simulator's private key in a
/// 0600 secrets file. Returns the connector file.
pub fn symphony_connector_file(dir: &Path, c: &SymphonyConnector<'_>) -> PathBuf {
    let manifest = crate::install_plugin(
        "symphony",
        "plugins/symphony/manifest.toml",
        &dir.join("plugin"),
    );
    let secrets = write_symphony_secrets(dir, c.extra_secrets);
    crate::write_file(
        dir,
        "connector.toml",
        &format!(
            r#"
id = "{id}"
plugin = "{manifest}"
retries = {retries}

[plugin-config]
pod_url = "{base}"
agent_url = "{base}"
key_manager_url = "{base}"
username = "{TEST_USERNAME}"
page_size = {page_size}

[grants]
hosts = ["{base}"]
signing-keys = ["private-key"]

[secrets]
from = "file"
path = "{secrets}"

[mapping]
domains = ["{domain}"]

{sink}
"#,
            id = c.id,
            manifest = manifest.display(),
            retries = c.retries,
            base = c.base,
            page_size = c.page_size,
            secrets = secrets.display(),
            domain = c.domain,
            sink = c.sink,
        ),
    )
}

/// A Symphony connector `id` over the simulator at `base`, in `dir`, into
/// the Maildir `dir/mail` (the simulator's domain mapped), run on
/// `schedule`, with `settings` added to its plugin's settings.
pub fn symphony_maildir_connector(
    dir: &Path,
    id: &str,
    base: &str,
    schedule: &str,
    settings: &str,
) -> PathBuf {
    let config = symphony_connector_file(
        dir,
        &SymphonyConnector {
            id,
            base,
            retries: 12,
            page_size: 20,
            domain: "acme-capital.example",
            sink: "[sink]\nkind = \"maildir\"\npath = \"mail\"\nfsync = false\n",
            extra_secrets: "",
        },
    );
    let text = std::fs::read_to_string(&config).expect("reading the connector file");
    std::fs::write(
        &config,
        text.replacen(
            "retries = 12\n",
            &format!("retries = 12\nschedule = \"{schedule}\"\n"),
            1,
        )
        .replacen(
            "page_size = 20\n",
            &format!("page_size = 20\n{settings}"),
            1,
        ),
    )
    .expect("writing the connector file");
    config
}
