//! The corpus of broken application files: each file in `tests/broken/` gets its specific
//! messages (snapshots in `tests/snapshots/`), never a panic, never a plan.

use std::path::Path;

#[test]
fn every_broken_file_gets_its_messages() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/broken");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "the corpus has {} files", files.len());
    for path in files {
        let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
        let src = std::fs::read_to_string(&path).unwrap();
        let shown = Path::new("tests/broken").join(path.file_name().unwrap());
        let err = match sturdy_compose::parse(&src, &shown) {
            Ok(_) => panic!("{} planned without error", shown.display()),
            Err(e) => e,
        };
        assert!(!err.diagnostics().is_empty());
        insta::assert_snapshot!(stem, err.to_string());
    }
}
