//! The mapping CSV (`ExternalUserId,Mailbox`), then a lookup of every id in
//! the input so the loaded map is used as a run uses it.
#![no_main]

use connector_host::map::UserMap;
use connector_model::Person;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let path = dir.path().join("mapping.csv");
    std::fs::write(&path, data).expect("the input is written");
    let Ok(map) = UserMap::load(Some(&path), vec!["example.com".into()]) else {
        return;
    };
    let people: Vec<Person> = String::from_utf8_lossy(data)
        .split([',', '\n'])
        .take(64)
        .map(|id| Person {
            id: id.trim().to_string(),
            display_name: None,
            email: Some(format!("{}@example.com", id.trim())),
        })
        .collect();
    for person in &people {
        let _ = map.resolve(person);
    }
    if let Some(sender) = people.first() {
        let _ = map.fan_out(&people, sender);
    }
});
