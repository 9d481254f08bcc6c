//! The shipped deployment files: the systemd unit runs unprivileged with only the
//! capability to bind low ports, and its example config is one scimguard accepts.

use scimguard::config::FileConfig;

const UNIT: &str = include_str!("../../contrib/scimguard.service");

fn setting<'a>(key: &str) -> Vec<&'a str> {
    UNIT.lines()
        .filter_map(|line| line.strip_prefix(key)?.strip_prefix('='))
        .collect()
}

#[test]
fn the_systemd_unit_runs_unprivileged_with_only_cap_net_bind_service() {
    assert_eq!(setting("User"), ["scimguard"]);
    assert_eq!(setting("AmbientCapabilities"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(setting("CapabilityBoundingSet"), ["CAP_NET_BIND_SERVICE"]);
    assert_eq!(setting("NoNewPrivileges"), ["true"]);
    assert_eq!(setting("ExecReload"), ["/bin/kill -HUP $MAINPID"]);
    let exec = setting("ExecStart");
    assert!(
        exec.len() == 1 && exec[0].contains(" run --config "),
        "{exec:?}"
    );
}

#[test]
fn the_units_example_config_uses_only_known_keys() {
    let example: String = UNIT
        .lines()
        .skip_while(|l| !l.starts_with("# Example"))
        .skip(1)
        .map_while(|l| l.strip_prefix("#   "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert!(example.contains("acme_domain"), "{example}");
    let parsed: FileConfig = toml::from_str(&example).unwrap_or_else(|e| panic!("{e}\n{example}"));
    assert_eq!(
        parsed.acme_domain.as_deref(),
        Some(&["scim.example.com".to_owned()][..])
    );
    assert!(parsed.client_token_file.is_some() && parsed.upstream_token_file.is_some());
}
