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
fn the_other_family_is_noted() {
    let note = other_family_note(&target(), &[a(300, &["192.0.2.10"]), aaaa(300)]).unwrap();
    assert!(
        note.contains("AAAA {2001:db8::10}") && note.contains("IPv6"),
        "{note}"
    );
    assert_eq!(
        other_family_note(&target(), &[a(300, &["192.0.2.10"])]),
        None
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

/// A primary in memory: the name's sets; an update may be answered NXRRSET
/// after someone else's change (`race`) or after applying it (a lost answer
/// whose retry finds the change done).
struct FakePrimary {
    sets: std::cell::RefCell<Vec<Rrset>>,
    race: Option<Rrset>,
    applied_then_nxrrset: bool,
    updates: std::cell::Cell<usize>,
}

impl FakePrimary {
    fn new(sets: Vec<Rrset>) -> Self {
        FakePrimary {
            sets: std::cell::RefCell::new(sets),
            race: None,
            applied_then_nxrrset: false,
            updates: std::cell::Cell::new(0),
        }
    }

    fn set(&self, kind: RecordKind) -> Option<Rrset> {
        self.sets
            .borrow()
            .iter()
            .find(|set| set.kind == kind)
            .cloned()
    }
}

impl DnsWire for FakePrimary {
    fn query(&self, _server: SocketAddr, name: &str, kind: RecordKind) -> Result<Answer> {
        let records = match kind {
            RecordKind::Soa => vec![Rdata::Soa {
                mname: "ns1.example.test.".into(),
                serial: 7,
            }],
            RecordKind::Ns => vec![Rdata::Ns {
                host: "ns1.example.test.".into(),
            }],
            _ if name == "cmw.example.test." => self
                .set(kind)
                .map(|set| {
                    set.addresses
                        .iter()
                        .map(|&address| Rdata::Address {
                            ttl: set.ttl,
                            address,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        Ok(Answer {
            rcode: "NOERROR".into(),
            records,
        })
    }

    fn update(
        &self,
        _server: SocketAddr,
        _key: &TsigKey,
        change: &RrsetChange,
    ) -> Result<UpdateOutcome> {
        self.updates.set(self.updates.get() + 1);
        let mut sets = self.sets.borrow_mut();
        let Some(set) = sets.iter_mut().find(|set| set.kind == change.current.kind) else {
            return Ok(UpdateOutcome::Rcode("NXRRSET".into()));
        };
        if let Some(race) = &self.race {
            *set = race.clone();
            return Ok(UpdateOutcome::Rcode("NXRRSET".into()));
        }
        if set.addresses != change.current.addresses {
            return Ok(UpdateOutcome::Rcode("NXRRSET".into()));
        }
        *set = change.wanted.clone();
        Ok(if self.applied_then_nxrrset {
            UpdateOutcome::Rcode("NXRRSET".into())
        } else {
            UpdateOutcome::Applied
        })
    }

    fn resolve(&self, _host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        Ok(vec![SocketAddr::new("127.0.0.1".parse().unwrap(), port)])
    }

    fn system_resolver(&self) -> Result<SocketAddr> {
        Ok("127.0.0.1:53".parse().unwrap())
    }
}

fn options(force: bool) -> DnsOptions {
    DnsOptions {
        instance: InstanceName::new("prod").unwrap(),
        target: target(),
        server: Some("127.0.0.1:53".parse().unwrap()),
        ns_port: 53,
        resolvers: Vec::new(),
        key: Some(
            super::super::dns_key::parse_bind_key(
                "key k { algorithm hmac-sha256; secret \"c2VjcmV0IGJ5dGVzIGhlcmU=\"; };",
            )
            .unwrap(),
        ),
        lowered_ttl: 5,
        force,
        verify_timeout: Duration::from_secs(0),
        now: 1000,
        stamp: "20261128T120000Z".into(),
    }
}

#[test]
fn a_change_by_someone_else_during_the_swap_stops_with_the_value_now() {
    let root = tempfile::tempdir().unwrap();
    let executor = crate::executor::LocalExecutor::new(root.path());
    let mut primary = FakePrimary::new(vec![a(3600, &["192.0.2.10"])]);
    primary.race = Some(a(5, &["192.0.2.66"]));
    let error = apply(&executor, &primary, &options(true)).unwrap_err();
    assert_eq!(error.kind(), crate::ErrorKind::StateConflict);
    assert!(error.to_string().contains("192.0.2.66"), "{error}");
    assert_eq!(primary.updates.get(), 1);
    // Nothing was switched: no saved state claims it was.
    assert!(
        read_saved_state(&executor, &InstanceName::new("prod").unwrap())
            .unwrap()
            .is_none()
    );
}

#[test]
fn an_nxrrset_for_an_update_that_went_through_is_success() {
    let root = tempfile::tempdir().unwrap();
    let executor = crate::executor::LocalExecutor::new(root.path());
    let mut primary = FakePrimary::new(vec![a(3600, &["192.0.2.10"])]);
    primary.applied_then_nxrrset = true;
    let report = apply(&executor, &primary, &options(true)).unwrap();
    assert!(report.changed);
    assert_eq!(primary.set(RecordKind::A), Some(a(3600, &["192.0.2.20"])));
    let saved = read_saved_state(&executor, &InstanceName::new("prod").unwrap())
        .unwrap()
        .unwrap();
    assert!(saved.switched);
    assert_eq!(saved.original, [a(3600, &["192.0.2.10"])]);
}

#[test]
fn plan_sends_nothing_and_verify_tables_every_server() {
    let root = tempfile::tempdir().unwrap();
    let executor = crate::executor::LocalExecutor::new(root.path());
    let primary = FakePrimary::new(vec![a(3600, &["192.0.2.10"]), aaaa(600)]);
    let report = plan(&executor, &primary, &options(false)).unwrap();
    assert_eq!(primary.updates.get(), 0);
    assert!(!report.changed);
    assert_eq!(report.caches_expire_at, Some(4600));
    let mut with_resolver = options(false);
    with_resolver.resolvers = vec!["10.0.0.2:53".parse().unwrap()];
    let report = verify(&primary, &with_resolver).unwrap();
    assert!(!report.ok);
    assert_eq!(report.servers.len(), 2);
    assert!(report
        .servers
        .iter()
        .all(|row| row.answer == ["192.0.2.10".parse::<IpAddr>().unwrap()]));
}
