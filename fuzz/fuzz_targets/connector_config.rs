//! A connector file: TOML with the sink, grants, schedule, mapping and the
//! plugin's own table, loaded as `connector run` loads it.
#![no_main]

use connector_host::config::ConnectorConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("connector.toml");
    std::fs::write(&path, data).expect("the input is written");
    if let Ok(config) = ConnectorConfig::load(&path) {
        let _ = config.plugin_config_json();
        let _ = config.locate_plugin_config_error("invalid type at line 1 column 2");
        let _ = config.schedule.next_due(Some(1_700_000_000_000));
    }
});
