//! The guestbook example plans into the expected addresses, capabilities and guest arguments.

use std::path::Path;

use sturdy_compose::{Condition, Probe, Restart};

fn guestbook() -> sturdy_compose::Plan {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let src = std::fs::read_to_string(root.join("examples/guestbook/sturdy.yaml")).unwrap();
    sturdy_compose::parse(&src, Path::new("examples/guestbook/sturdy.yaml"))
        .unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn guestbook_plans() {
    let plan = guestbook();
    assert_eq!(plan.name, "guestbook");
    assert_eq!(plan.start_order, ["db", "web"]);
    let web = plan.service("web").unwrap();
    let db = plan.service("db").unwrap();
    assert_eq!(web.ipv4.to_string(), "10.77.0.2");
    assert_eq!(db.ipv4.to_string(), "10.77.0.3");
    assert_eq!(
        web.image,
        Path::new("examples/guestbook/../../target/guest/x86_64-unknown-linux-gnu/release/web")
    );
    assert_eq!(
        web.args,
        [
            "--sturdy.v1.net=service:10.77.0.2/24",
            "--sturdy.v1.use=db.kv:10.77.0.3:6379/tcp",
            "--sturdy.v1.provide=http:80/tcp",
        ]
    );
    assert_eq!(web.ports[0].host_port, 8080);
    assert_eq!(web.ports[0].endpoint, "http");
    assert_eq!(web.restart, Restart::OnFailure);
    assert_eq!(web.depends_on[0].condition, Condition::ServiceHealthy);
    assert_eq!(
        web.healthcheck.as_ref().unwrap().probe,
        Probe::Http {
            path: "/health".into()
        }
    );
    assert_eq!(db.uses, Vec::<String>::new());
    assert_eq!(db.volumes[0].device, "storage");
    assert_eq!(db.volumes[0].size, 64 << 20);
    assert_eq!(db.mem_mib(), 64);
    assert_eq!(plan.capabilities.len(), 1);
    assert!(plan.egress.is_empty());
    insta::assert_snapshot!("guestbook_plan_yaml", plan.to_yaml());
}

#[test]
fn plan_round_trips_through_json_and_matches_the_fabric() {
    let plan = guestbook();
    let back = sturdy_compose::Plan::from_json(&plan.to_json()).unwrap();
    assert_eq!(back, plan);
    let fabric = plan.fabric().unwrap();
    fabric.validate().unwrap();
    for s in &plan.services {
        let rendered = sturdy_bootcfg::render(&fabric.bootcfg_for(&s.name).unwrap());
        assert!(s.args.join(" ").starts_with(&rendered), "{}", s.name);
        let (config, own) = sturdy_bootcfg::parse(s.args.iter().map(String::as_str)).unwrap();
        assert_eq!(config, fabric.bootcfg_for(&s.name).unwrap());
        assert!(own.is_empty());
    }
    let ports = fabric.monitor_net_args("web", 3).unwrap();
    assert_eq!(ports[1], "--net-mac:service=02:00:0a:4d:00:02");
}

#[test]
fn load_finds_the_file_in_a_directory() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/guestbook");
    let plan = sturdy_compose::load(&dir).unwrap();
    assert_eq!(plan.services.len(), 2);
    let err = sturdy_compose::load(Path::new("/nonexistent/sturdy.yaml")).unwrap_err();
    assert!(err
        .to_string()
        .starts_with("cannot read application file /nonexistent/sturdy.yaml: "));
}

/// `cpus` becomes the plan's thousandths of a core (one core by default); a plan recorded
/// before the key existed reads as one core; a plan with a CPU time the file refuses is
/// refused by `check`.
#[test]
fn cpus_are_planned_in_thousandths_of_a_core() {
    let plan = guestbook();
    assert!(plan.services.iter().all(|s| s.cpus_milli == 1000));
    let src = "name: app\nservices:\n  a:\n    image: x\n    cpus: 0.5\n";
    let plan = sturdy_compose::parse(src, Path::new("sturdy.yaml")).unwrap();
    assert_eq!(plan.services[0].cpus_milli, 500);
    plan.check().unwrap();

    let mut json: serde_json::Value = serde_json::from_str(&plan.to_json()).unwrap();
    let removed = json["services"][0]
        .as_object_mut()
        .unwrap()
        .remove("cpus_milli");
    assert_eq!(removed, Some(serde_json::json!(500)));
    let back = sturdy_compose::Plan::from_json(&json.to_string()).unwrap();
    assert_eq!(back.services[0].cpus_milli, 1000);

    let mut bad = plan.clone();
    bad.services[0].cpus_milli = 0;
    let e = bad.check().unwrap_err();
    assert!(e.contains("service 'a': its CPU time"), "{e}");
}
