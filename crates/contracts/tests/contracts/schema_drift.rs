//! Fails when `schemas/` no longer matches the Rust types.
//! Regenerate with `SWITCHYARD_UPDATE_SCHEMAS=1 cargo test -p switchyard-contracts --test contracts schema_drift`.

use std::path::PathBuf;

fn schemas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../schemas")
}

#[test]
fn checked_in_schemas_match_the_types() {
    let dir = schemas_dir();
    let update = std::env::var_os("SWITCHYARD_UPDATE_SCHEMAS").is_some();
    let mut drifted = Vec::new();
    let expected_files: Vec<_> = switchyard_contracts::schema::all();
    for (name, schema) in &expected_files {
        let rendered = switchyard_contracts::schema::render(schema);
        let path = dir.join(name);
        if update {
            std::fs::write(&path, &rendered).unwrap();
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(rendered.as_str()) {
            drifted.push(name.to_string());
        }
    }
    // A schema file whose type was removed is drift too.
    for entry in std::fs::read_dir(&dir).unwrap() {
        let file = entry.unwrap().file_name().to_string_lossy().into_owned();
        // `openapi.json` is the gateway's API description, with its own drift test.
        if file.ends_with(".json")
            && file != "openapi.json"
            && !expected_files.iter().any(|(n, _)| *n == file)
        {
            drifted.push(format!("{file} (no longer generated)"));
        }
    }
    assert!(
        drifted.is_empty(),
        "schemas/ drifted from the Rust types: {drifted:?}; regenerate with \
         SWITCHYARD_UPDATE_SCHEMAS=1 cargo test -p switchyard-contracts --test contracts schema_drift"
    );
}
