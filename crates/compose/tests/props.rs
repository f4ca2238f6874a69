//! Random and mutated application files never panic: they plan, or they get diagnostics that
//! all point inside the file.

use std::path::Path;

use proptest::prelude::*;

const GUESTBOOK: &str = include_str!("../../../examples/guestbook/sturdy.yaml");

fn check(src: &str) {
    match sturdy_compose::parse(src, Path::new("x/sturdy.yaml")) {
        Ok(plan) => {
            let _ = plan.to_yaml();
            let _ = plan.to_json();
        }
        Err(e) => {
            let lines = src.lines().count().max(1) + 1;
            assert!(!e.diagnostics().is_empty());
            for d in e.diagnostics() {
                assert!(
                    d.line >= 1 && d.line <= lines,
                    "{d} (file has {lines} lines)"
                );
                assert!(d.column >= 1, "{d}");
                assert!(!d.message.is_empty());
            }
        }
    }
}

fn yamlish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("name: app\n".to_string()),
        Just("services:\n".to_string()),
        Just("  web:\n".to_string()),
        Just("  db:\n".to_string()),
        Just("    image: g/x\n".to_string()),
        Just("    uses: [db]\n".to_string()),
        Just("    uses: [\"db.kv\", web]\n".to_string()),
        Just("    provides: { kv: 6379/tcp, http: 80 }\n".to_string()),
        Just("    ports: [\"8080:80\"]\n".to_string()),
        Just("    depends_on: [web, db]\n".to_string()),
        Just("    depends_on: { db: { condition: service_healthy } }\n".to_string()),
        Just("    healthcheck: { tcp: 6379 }\n".to_string()),
        Just("    healthcheck: { http: /h, port: 80, interval: 1s }\n".to_string()),
        Just("    volumes: [\"data:storage\"]\n".to_string()),
        Just("    command: [\"{{ uses.db.kv }}\", \"{{ self.ipv4 }}\", \"{{\"]\n".to_string()),
        Just("    egress: [\"1.2.3.4:5/udp\"]\n".to_string()),
        Just("    mem: 64M\n".to_string()),
        Just("volumes: { data: { size: 1M } }\n".to_string()),
        Just("a: &x [1, 2]\nb: *x\n".to_string()),
        Just("---\n".to_string()),
        Just("- \n".to_string()),
        "[ -~\t]{0,12}\n",
    ];
    prop::collection::vec(token, 0..14).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn yamlish_input_never_panics(src in yamlish()) {
        check(&src);
    }

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        check(&src);
    }

    #[test]
    fn mutated_guestbook_never_panics(cut in 0usize..2000, len in 0usize..20, insert in "[ -~\n]{0,6}") {
        let mut src = GUESTBOOK.to_string();
        let at = cut.min(src.len());
        let at = (0..=at).rev().find(|&i| src.is_char_boundary(i)).unwrap_or(0);
        let end = (at + len).min(src.len());
        let end = (end..=src.len()).find(|&i| src.is_char_boundary(i)).unwrap_or(src.len());
        src.replace_range(at..end, &insert);
        check(&src);
    }
}
