use super::*;

fn target() -> DnsTarget {
    DnsTarget {
        zone: "example.test".into(),
        name: "cmw.example.test".into(),
        old: "192.0.2.10".parse().unwrap(),
        new: "192.0.2.20".parse().unwrap(),
    }
}

fn a(ttl: u32, addresses: &[&str]) -> Rrset {
    Rrset {
        kind: RecordKind::A,
        ttl,
        addresses: addresses.iter().map(|a| a.parse().unwrap()).collect(),
    }
}

fn aaaa(ttl: u32) -> Rrset {
    Rrset {
        kind: RecordKind::Aaaa,
        ttl,
        addresses: vec!["2001:db8::10".parse().unwrap()],
    }
}

fn saved(expire: u64) -> SavedDnsState {
    SavedDnsState {
        format: 1,
        method: "dns".into(),
        saved_at: "20261128T120000Z".into(),
        target: target(),
        server: "127.0.0.1:53".into(),
        original: vec![a(3600, &["192.0.2.10"]), aaaa(600)],
        lowered_ttl: 5,
        caches_expire_at: expire,
        caches_expire_at_utc: "20261128T130000Z".into(),
        switched: false,
    }
}

#[test]
fn prepare_lowers_every_address_set_and_waits_out_the_longest_ttl() {
    let (changes, until) =
        plan_prepare(&target(), &[a(3600, &["192.0.2.10"]), aaaa(600)], 5, 1000).unwrap();
    assert_eq!(until, 4600);
    assert_eq!(changes.len(), 2);
    assert_eq!(changes[0].current, a(3600, &["192.0.2.10"]));
    assert_eq!(changes[0].wanted, a(5, &["192.0.2.10"]));
    assert_eq!(changes[0].zone, "example.test.");
    assert_eq!(changes[0].name, "cmw.example.test.");
    assert_eq!(changes[1].wanted.ttl, 5);
    assert_eq!(
        changes[0].display(),
        "zone example.test.; prereq yxrrset cmw.example.test. A 192.0.2.10; update delete \
         cmw.example.test. A 192.0.2.10; update add cmw.example.test. 5 A 192.0.2.10"
    );
    // Already low: nothing to send.
    let (changes, _) = plan_prepare(&target(), &[a(5, &["192.0.2.10"])], 5, 1000).unwrap();
    assert!(changes.is_empty());
}

#[test]
fn prepare_refuses_when_the_old_address_is_not_there() {
    let error = plan_prepare(&target(), &[a(300, &["192.0.2.99"])], 5, 0).unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::StateConflict);
    assert!(error.to_string().contains("192.0.2.99"), "{error}");
}

#[test]
fn apply_refuses_before_the_caches_expire_unless_forced() {
    let current = a(5, &["192.0.2.10"]);
    let error = plan_swap(&target(), Some(&current), Some(&saved(2000)), 1999, false).unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::StateConflict);
    assert!(error.to_string().contains("1s from now"), "{error}");
    let forced = plan_swap(&target(), Some(&current), Some(&saved(2000)), 1999, true).unwrap();
    assert_eq!(forced.unwrap().wanted, a(5, &["192.0.2.20"]));
    let waited = plan_swap(&target(), Some(&current), Some(&saved(2000)), 2000, false).unwrap();
    assert!(waited.is_some());
    // Without prepare: refused (caches hold the full TTL), unless forced.
    let error = plan_swap(&target(), Some(&current), None, 5000, false).unwrap_err();
    assert!(error.to_string().contains("prepare"), "{error}");
}

#[test]
fn apply_swaps_only_the_old_address_and_is_done_once() {
    let current = a(5, &["192.0.2.10", "192.0.2.30"]);
    let swap = plan_swap(&target(), Some(&current), None, 0, true)
        .unwrap()
        .unwrap();
    assert_eq!(swap.current, current);
    assert_eq!(swap.wanted, a(5, &["192.0.2.20", "192.0.2.30"]));
    let done = a(5, &["192.0.2.20"]);
    assert_eq!(
        plan_swap(&target(), Some(&done), None, 0, false).unwrap(),
        None
    );
    let other = a(5, &["192.0.2.99"]);
    let error = plan_swap(&target(), Some(&other), None, 0, true).unwrap_err();
    assert!(error.to_string().contains("192.0.2.99"), "{error}");
}

#[test]
fn finish_restores_the_ttl_and_revert_the_addresses_too() {
    let now = [a(5, &["192.0.2.20"]), aaaa(5)];
    let finish = plan_restore(&saved(0), &now, false).unwrap();
    assert_eq!(
        finish.iter().map(|c| c.wanted.clone()).collect::<Vec<_>>(),
        [a(3600, &["192.0.2.20"]), aaaa(600)]
    );
    let revert = plan_restore(&saved(0), &now, true).unwrap();
    assert_eq!(revert[0].wanted, a(3600, &["192.0.2.10"]));
    assert_eq!(revert[0].current, now[0]);
    // Already as saved: nothing.
    let original = saved(0).original;
    assert!(plan_restore(&saved(0), &original, true).unwrap().is_empty());
    // A set gone: never recreated by the tool.
    let error = plan_restore(&saved(0), &now[..1], false).unwrap_err();
    assert!(error.to_string().contains("AAAA"), "{error}");
}

#[test]
fn rcodes_are_errors_that_say_what_to_do() {
    let change = plan_swap(&target(), Some(&a(5, &["192.0.2.10"])), None, 0, true)
        .unwrap()
        .unwrap();
    let server: SocketAddr = "127.0.0.1:53".parse().unwrap();
    let now = a(5, &["192.0.2.77"]);
    let stale = update_error(server, "NXRRSET", &change, Some(&now));
    assert_eq!(stale.kind(), crate::ErrorKind::StateConflict);
    assert!(stale.to_string().contains("192.0.2.77"), "{stale}");
    for rcode in ["REFUSED", "NOTAUTH"] {
        let error = update_error(server, rcode, &change, None);
        assert_eq!(error.kind(), crate::ErrorKind::AuthenticationFailed);
    }
    assert_eq!(
        update_error(server, "NOTZONE", &change, None).kind(),
        crate::ErrorKind::BadInput
    );
}

#[test]
fn targets_are_checked() {
    let mut outside = target();
    outside.name = "cmw.example.org".into();
    assert!(check_target(&outside).is_err());
    let mut same = target();
    same.new = same.old;
    assert!(check_target(&same).is_err());
    let mut mixed = target();
    mixed.new = "2001:db8::1".parse().unwrap();
    assert!(check_target(&mixed).is_err());
    assert!(check_target(&target()).is_ok());
    let mut apex = target();
    apex.name = "Example.Test.".into();
    assert!(check_target(&apex).is_ok());
}

#[test]
fn answers_and_servers_read() {
    let answer = Answer {
        rcode: "NOERROR".into(),
        records: vec![
            Rdata::Address {
                ttl: 30,
                address: "192.0.2.20".parse().unwrap(),
            },
            Rdata::Address {
                ttl: 20,
                address: "192.0.2.5".parse().unwrap(),
            },
        ],
    };
    let set = rrset_of(&answer, RecordKind::A).unwrap();
    assert_eq!(set, a(20, &["192.0.2.5", "192.0.2.20"]));
    assert!(answers_new(&target(), Some(&set)));
    assert!(rrset_of(&answer, RecordKind::Aaaa).is_none());
    assert_eq!(parse_server("10.0.0.1").unwrap().port(), 53);
    assert_eq!(parse_server("10.0.0.1:5353").unwrap().port(), 5353);
    assert_eq!(parse_server("[::1]:5353").unwrap().port(), 5353);
    assert!(parse_server("ns1.example.test").is_err());
}
