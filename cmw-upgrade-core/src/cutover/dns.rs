//! The dns cut-over: the name clients use moves from the old server's address
//! to the new one by RFC 2136 updates signed with TSIG, sent over TCP to the
//! zone's primary (its SOA MNAME, or the server given).
//!
//! Four moves, each run by the admin, hours apart if the TTL is long:
//! - [`prepare`] lowers the TTL of the name's A (and AAAA) records to a few
//!   seconds, and saves what was there and the time after which no cache can
//!   hold the old TTL any more (now + the old TTL);
//! - [`apply`] refuses before that time (unless forced), then replaces the old
//!   address with the new one, on the condition that the record set is still
//!   what was just read (the update's prerequisite: a change by someone else
//!   makes it fail whole, with nothing changed);
//! - [`verify`] asks every authoritative server of the zone (its NS set) and
//!   the resolvers given, until all answer the new address or time is up;
//! - [`finish`] restores the TTL; [`revert`] restores the address and TTL saved.
//!
//! Every update is a compare-and-swap on the record set as just read, and
//! only the address records of the one name are touched: nothing the tool did
//! not create is ever deleted. The decisions (what to send, when to refuse)
//! are pure functions over data; the DNS traffic goes through [`DnsWire`]
//! (hickory over TCP in [`super::dns_wire`]), the saved state through the executor.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::dns_key::TsigKey;
use crate::error::{Error, Result};
use crate::executor::Executor;
use crate::instance::InstanceName;

/// The record types the dns cut-over reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum RecordKind {
    /// IPv4 address.
    A,
    /// IPv6 address.
    #[serde(rename = "AAAA")]
    Aaaa,
    /// Start of authority (the primary, the serial).
    #[serde(rename = "SOA")]
    Soa,
    /// The zone's authoritative servers.
    #[serde(rename = "NS")]
    Ns,
}

impl RecordKind {
    /// The type's name in zone files.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Soa => "SOA",
            RecordKind::Ns => "NS",
        }
    }

    /// The address type an address goes in.
    pub fn of_address(address: IpAddr) -> RecordKind {
        match address {
            IpAddr::V4(_) => RecordKind::A,
            IpAddr::V6(_) => RecordKind::Aaaa,
        }
    }
}

/// One record of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rdata {
    /// An A or AAAA record.
    Address {
        /// Its TTL.
        ttl: u32,
        /// The address.
        address: IpAddr,
    },
    /// The zone's SOA.
    Soa {
        /// The primary's host name.
        mname: String,
        /// The zone's serial.
        serial: u32,
    },
    /// One authoritative server's host name.
    Ns {
        /// The host name.
        host: String,
    },
}

/// What a server answered to a query.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Answer {
    /// The response code (`NOERROR`, `NXDOMAIN`, ...).
    pub rcode: String,
    /// The answer section's records of the asked type.
    pub records: Vec<Rdata>,
}

/// A record set of addresses as one unit: what an update compares and swaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rrset {
    /// A or AAAA.
    pub kind: RecordKind,
    /// The set's TTL.
    pub ttl: u32,
    /// The addresses, sorted.
    pub addresses: Vec<IpAddr>,
}

impl Rrset {
    fn show(&self) -> String {
        format!(
            "{} TTL {} {{{}}}",
            self.kind.as_str(),
            self.ttl,
            join(&self.addresses)
        )
    }
}

/// One update: the set as read (the prerequisite, and what is deleted) and
/// the set as wanted (what is added), for one name of one zone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RrsetChange {
    /// The zone (`example.com.`).
    pub zone: String,
    /// The name (`cmw.example.com.`).
    pub name: String,
    /// The set as read: the update applies only if it is still exactly so.
    pub current: Rrset,
    /// The set as wanted.
    pub wanted: Rrset,
}

impl RrsetChange {
    /// The update as `nsupdate` would send it.
    pub fn display(&self) -> String {
        let kind = self.current.kind.as_str();
        let mut lines = vec![format!("zone {}", self.zone)];
        lines.extend(
            self.current
                .addresses
                .iter()
                .map(|address| format!("prereq yxrrset {} {kind} {address}", self.name)),
        );
        lines.extend(
            self.current
                .addresses
                .iter()
                .map(|address| format!("update delete {} {kind} {address}", self.name)),
        );
        lines.extend(self.wanted.addresses.iter().map(|address| {
            format!(
                "update add {} {} {} {address}",
                self.name,
                self.wanted.ttl,
                self.wanted.kind.as_str()
            )
        }));
        lines.join("; ")
    }
}

/// How a signed update went (a response code other than these is an error).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpdateOutcome {
    /// NOERROR: applied.
    Applied,
    /// A response code: NXRRSET (the set is no longer as read), REFUSED, NOTAUTH, ...
    Rcode(String),
}

/// The DNS traffic of the cut-over: network I/O from this machine, kept
/// behind this trait so the decisions are tested over data.
pub trait DnsWire {
    /// Asks `server` over TCP for `name`'s records of `kind` (unsigned, recursion desired).
    ///
    /// # Errors
    /// The server does not answer in time, or the connection fails.
    fn query(&self, server: SocketAddr, name: &str, kind: RecordKind) -> Result<Answer>;

    /// Sends `change` as an update signed with `key` to `server` over TCP.
    ///
    /// # Errors
    /// [`Error::AuthenticationFailed`] when the server does not accept the key's signature;
    /// an error when the server does not answer.
    fn update(
        &self,
        server: SocketAddr,
        key: &TsigKey,
        change: &RrsetChange,
    ) -> Result<UpdateOutcome>;

    /// The addresses of a host name through this machine's resolver.
    ///
    /// # Errors
    /// The name does not resolve.
    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>>;

    /// This machine's first resolver (from `/etc/resolv.conf`).
    ///
    /// # Errors
    /// There is none.
    fn system_resolver(&self) -> Result<SocketAddr>;
}

/// The name and the two addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsTarget {
    /// The zone (`example.com.`).
    pub zone: String,
    /// The name clients use (`cmw.example.com.`).
    pub name: String,
    /// The address traffic leaves.
    pub old: IpAddr,
    /// The address traffic goes to.
    pub new: IpAddr,
}

/// What a dns cut-over needs.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    /// The instance (names the saved state's folder).
    pub instance: InstanceName,
    /// The name and addresses.
    pub target: DnsTarget,
    /// The primary to update (`--server`); `None`: the SOA MNAME's address, port 53.
    pub server: Option<SocketAddr>,
    /// The port of the NS set's servers when verifying (53 but in labs and tests).
    pub ns_port: u16,
    /// Resolvers `verify` asks too.
    pub resolvers: Vec<SocketAddr>,
    /// The key that signs the updates (`None` for plan and verify).
    pub key: Option<TsigKey>,
    /// The TTL `prepare` sets.
    pub lowered_ttl: u32,
    /// `apply` before the caches have expired.
    pub force: bool,
    /// How long `verify` asks before it reports what is still old.
    pub verify_timeout: Duration,
    /// Now, in seconds since 1970 (UTC).
    pub now: u64,
    /// A stamp for file names (`20261128T113000Z`).
    pub stamp: String,
}

/// The saved state's server path for an instance.
pub fn saved_state_path(instance: &InstanceName) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover-dns.json",
        instance.as_str()
    )
}

/// What was there before the first change, and how far the cut-over went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDnsState {
    /// The format of this file.
    pub format: u32,
    /// `dns`.
    pub method: String,
    /// When it was saved (UTC stamp).
    pub saved_at: String,
    /// The name and addresses.
    pub target: DnsTarget,
    /// The primary the updates went to.
    pub server: String,
    /// The name's address sets as they were before `prepare`.
    pub original: Vec<Rrset>,
    /// The TTL `prepare` set.
    pub lowered_ttl: u32,
    /// After this time (seconds since 1970) no cache holds a record with the old TTL.
    pub caches_expire_at: u64,
    /// The same, readable (UTC).
    pub caches_expire_at_utc: String,
    /// Whether `apply` swapped the address.
    pub switched: bool,
}

const SAVED_FORMAT: u32 = 1;

/// One change (or wait) of a dns cut-over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum DnsStep {
    /// Save (or update) the state file.
    SaveState {
        /// Server path.
        path: String,
    },
    /// A signed compare-and-swap of one record set.
    Update {
        /// Why (`lower the TTL`, `swap the address`, `restore the TTL`).
        purpose: String,
        /// The update.
        change: RrsetChange,
    },
    /// No cache holds the old TTL after this time; `apply` waits for it.
    WaitCaches {
        /// Seconds since 1970.
        until: u64,
        /// The TTL caches may still hold.
        ttl: u32,
    },
    /// The saved state is kept beside, out of the way of the next cut-over.
    KeepStateBeside {
        /// Where it goes.
        path: String,
    },
}

impl DnsStep {
    /// The step as a plan line.
    pub fn display(&self) -> String {
        match self {
            DnsStep::SaveState { path } => format!(
                "save the state (the record sets as before the first change, how far the \
                 cut-over went) to {path}"
            ),
            DnsStep::Update { purpose, change } => format!(
                "{purpose}: {} -> {}  [{}]",
                change.current.show(),
                change.wanted.show(),
                change.display()
            ),
            DnsStep::WaitCaches { until, ttl } => format!(
                "wait until {} (the old TTL of {ttl}s has run out in every cache) before apply",
                crate::exec::utc_stamp(system_time(*until))
            ),
            DnsStep::KeepStateBeside { path } => format!("keep the saved state as {path}"),
        }
    }
}

/// How a step went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsStepReport {
    /// `prepare`, `apply`, `finish` or `revert`.
    pub phase: String,
    /// The step.
    #[serde(flatten)]
    pub step: DnsStep,
    /// The step as a plan line.
    pub display: String,
    /// `planned`, `done` or `unchanged`.
    pub outcome: String,
}

/// One server's answer in `verify`'s table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerAnswer {
    /// `authoritative` (from the NS set) or `resolver`.
    pub role: String,
    /// The server's name (an NS host) or address.
    pub server: String,
    /// Where it was asked.
    pub address: String,
    /// The addresses it answered.
    pub answer: Vec<IpAddr>,
    /// The TTL it answered with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<u32>,
    /// Whether it answers the new address and not the old one.
    pub ok: bool,
    /// What went wrong asking it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What a dns cut-over command did (or would do).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DnsReport {
    /// `plan`, `prepare`, `apply`, `verify`, `finish` or `revert`.
    pub action: String,
    /// `dns`.
    pub method: String,
    /// Whether everything holds (verify) or went through.
    pub ok: bool,
    /// Whether anything was changed.
    pub changed: bool,
    /// The name and addresses.
    pub target: DnsTarget,
    /// The primary the updates go to.
    pub server: String,
    /// The saved state's server path.
    pub saved_state: String,
    /// The name's address sets before.
    pub before: Vec<Rrset>,
    /// The name's address sets after (a plan: as now).
    pub after: Vec<Rrset>,
    /// The zone's SOA serial before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_before: Option<u32>,
    /// The zone's SOA serial after.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub serial_after: Option<u32>,
    /// When no cache holds the old TTL any more (seconds since 1970), once prepared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caches_expire_at: Option<u64>,
    /// The steps, in order.
    pub steps: Vec<DnsStepReport>,
    /// Each server's answer (verify).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<ServerAnswer>,
    /// What the admin should know (records of the other address family).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

fn join(addresses: &[IpAddr]) -> String {
    addresses
        .iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn system_time(seconds: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(seconds)
}

/// A name with its final dot, lowercase.
pub fn fqdn(name: &str) -> String {
    let name = name.trim().to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

/// Checks the target: the name is in the zone, the two addresses differ and
/// are of one family. Pure.
///
/// # Errors
/// [`Error::BadInput`] saying which.
pub fn check_target(target: &DnsTarget) -> Result<()> {
    let (zone, name) = (fqdn(&target.zone), fqdn(&target.name));
    if name != zone && !name.ends_with(&format!(".{zone}")) {
        return Err(Error::BadInput {
            details: format!(
                "--name {name} is not in --zone {zone}; pass the zone that holds the name"
            ),
        });
    }
    if target.old == target.new {
        return Err(Error::BadInput {
            details: format!(
                "--old and --new are both {}; pass the address traffic leaves and the one it goes to",
                target.old
            ),
        });
    }
    if RecordKind::of_address(target.old) != RecordKind::of_address(target.new) {
        return Err(Error::BadInput {
            details: format!(
                "--old {} and --new {} are of different families; an A record swaps to an IPv4 \
                 address, an AAAA record to an IPv6 one",
                target.old, target.new
            ),
        });
    }
    Ok(())
}

/// The name's address set of `kind` from an answer (`None`: there is none). Pure.
pub fn rrset_of(answer: &Answer, kind: RecordKind) -> Option<Rrset> {
    let mut ttl = None;
    let mut addresses: Vec<IpAddr> = answer
        .records
        .iter()
        .filter_map(|record| match record {
            Rdata::Address {
                ttl: found,
                address,
            } if RecordKind::of_address(*address) == kind => {
                ttl = Some(ttl.map_or(*found, |ttl: u32| ttl.min(*found)));
                Some(*address)
            }
            _ => None,
        })
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    ttl.map(|ttl| Rrset {
        kind,
        ttl,
        addresses,
    })
}

fn change(target: &DnsTarget, current: &Rrset, wanted: Rrset) -> RrsetChange {
    RrsetChange {
        zone: fqdn(&target.zone),
        name: fqdn(&target.name),
        current: current.clone(),
        wanted,
    }
}

fn swapped_kind(target: &DnsTarget) -> RecordKind {
    RecordKind::of_address(target.old)
}

/// The updates that lower the TTL of every address set of the name (those
/// above `lowered_ttl`), and the time after which caches hold no record with
/// the old TTL. Pure.
///
/// # Errors
/// [`Error::StateConflict`] when the old address is not in the name's set (the
/// message shows what is there).
pub fn plan_prepare(
    target: &DnsTarget,
    sets: &[Rrset],
    lowered_ttl: u32,
    now: u64,
) -> Result<(Vec<RrsetChange>, u64)> {
    let kind = swapped_kind(target);
    let swapped = sets.iter().find(|set| set.kind == kind);
    if !swapped.is_some_and(|set| set.addresses.contains(&target.old)) {
        return Err(Error::StateConflict {
            details: format!(
                "{} {} is {}; the old address {} is not there: check --name and --old (nothing was changed)",
                fqdn(&target.name),
                kind.as_str(),
                swapped.map_or("absent".to_owned(), |set| format!("{{{}}}", join(&set.addresses))),
                target.old
            ),
        });
    }
    let changes = sets
        .iter()
        .filter(|set| set.ttl > lowered_ttl)
        .map(|set| {
            change(
                target,
                set,
                Rrset {
                    ttl: lowered_ttl,
                    ..set.clone()
                },
            )
        })
        .collect();
    let longest = sets.iter().map(|set| set.ttl).max().unwrap_or(0);
    Ok((changes, now + u64::from(longest)))
}

/// The swap of the old address for the new one, or `None` when it is done
/// already. Refuses before the caches have expired, unless forced. Pure.
///
/// # Errors
/// [`Error::StateConflict`] before `caches_expire_at` without `force`, with no
/// saved state without `force`, or when the set holds neither address as expected.
pub fn plan_swap(
    target: &DnsTarget,
    current: Option<&Rrset>,
    saved: Option<&SavedDnsState>,
    now: u64,
    force: bool,
) -> Result<Option<RrsetChange>> {
    let name = fqdn(&target.name);
    let kind = swapped_kind(target);
    let Some(current) = current else {
        return Err(Error::StateConflict {
            details: format!(
                "{name} has no {} record; nothing was changed",
                kind.as_str()
            ),
        });
    };
    if current.addresses.contains(&target.new) && !current.addresses.contains(&target.old) {
        return Ok(None);
    }
    if !current.addresses.contains(&target.old) {
        return Err(Error::StateConflict {
            details: format!(
                "{name} {} is {{{}}}: neither the old address {} nor the new one alone; someone \
                 else changed it; nothing was changed",
                kind.as_str(),
                join(&current.addresses),
                target.old
            ),
        });
    }
    if !force {
        match saved {
            None => {
                return Err(Error::StateConflict {
                    details: format!(
                    "{name} still has TTL {}s: caches would keep the old address that long; run \
                         `cmw-upgrade cutover prepare` first (it lowers the TTL), or pass --force",
                    current.ttl
                ),
                })
            }
            Some(saved) if now < saved.caches_expire_at => {
                return Err(Error::StateConflict {
                    details: format!(
                        "caches may hold {name} with its old TTL until {} ({}s from now); apply \
                         then, or pass --force to switch now (clients with a cached answer keep \
                         the old address until it expires); nothing was changed",
                        saved.caches_expire_at_utc,
                        saved.caches_expire_at - now
                    ),
                })
            }
            Some(_) => {}
        }
    }
    let mut addresses: Vec<IpAddr> = current
        .addresses
        .iter()
        .map(|&address| {
            if address == target.old {
                target.new
            } else {
                address
            }
        })
        .collect();
    addresses.sort_unstable();
    addresses.dedup();
    Ok(Some(change(
        target,
        current,
        Rrset {
            addresses,
            ..current.clone()
        },
    )))
}

/// The updates that bring the TTL (and with `addresses`, the addresses) of
/// each saved set back; sets already so need none. Pure.
///
/// # Errors
/// [`Error::StateConflict`] when a saved set is gone now.
pub fn plan_restore(
    saved: &SavedDnsState,
    sets: &[Rrset],
    addresses: bool,
) -> Result<Vec<RrsetChange>> {
    let mut changes = Vec::new();
    for original in &saved.original {
        let Some(current) = sets.iter().find(|set| set.kind == original.kind) else {
            return Err(Error::StateConflict {
                details: format!(
                    "{} has no {} record any more (it had {}); someone removed it; the tool does \
                     not create it again: add it by hand",
                    fqdn(&saved.target.name),
                    original.kind.as_str(),
                    original.show()
                ),
            });
        };
        let wanted = Rrset {
            kind: original.kind,
            ttl: original.ttl,
            addresses: if addresses {
                original.addresses.clone()
            } else {
                current.addresses.clone()
            },
        };
        if *current != wanted {
            changes.push(change(&saved.target, current, wanted));
        }
    }
    Ok(changes)
}

/// A note when the name also has addresses of the other family: the swap
/// changes only the family of `--old`, so those clients keep their address. Pure.
pub fn other_family_note(target: &DnsTarget, sets: &[Rrset]) -> Option<String> {
    let kind = swapped_kind(target);
    let other = sets.iter().find(|set| set.kind != kind)?;
    Some(format!(
        "{} also has {} {{{}}}: only its TTL is lowered and restored; clients over {} keep \
         reaching that address: move it too (a cut-over with --old/--new of that family, \
         after this one is finished) or remove it by hand",
        fqdn(&target.name),
        other.kind.as_str(),
        join(&other.addresses),
        if other.kind == RecordKind::Aaaa {
            "IPv6"
        } else {
            "IPv4"
        }
    ))
}

/// Whether an answer shows the switch done: the new address, not the old. Pure.
pub fn answers_new(target: &DnsTarget, set: Option<&Rrset>) -> bool {
    set.is_some_and(|set| {
        set.addresses.contains(&target.new) && !set.addresses.contains(&target.old)
    })
}

/// Reads the saved state; `None` when there is none.
///
/// # Errors
/// [`Error::StateConflict`] when it does not read.
pub fn read_saved_state(
    executor: &dyn Executor,
    instance: &InstanceName,
) -> Result<Option<SavedDnsState>> {
    super::read_saved(
        executor,
        &saved_state_path(instance),
        "dns cut-over",
        "check the records by hand",
    )
}

fn write_saved_state(executor: &dyn Executor, path: &str, saved: &SavedDnsState) -> Result<()> {
    super::write_saved(executor, path, saved)
}

/// The primary, its address, and the zone's serial.
struct Primary {
    address: SocketAddr,
    serial: Option<u32>,
}

fn primary(wire: &dyn DnsWire, options: &DnsOptions) -> Result<Primary> {
    let zone = fqdn(&options.target.zone);
    let asked = match options.server {
        Some(server) => server,
        None => wire.system_resolver()?,
    };
    let soa = wire.query(asked, &zone, RecordKind::Soa)?;
    let found = soa.records.iter().find_map(|record| match record {
        Rdata::Soa { mname, serial } => Some((mname.clone(), *serial)),
        _ => None,
    });
    let Some((mname, serial)) = found else {
        return Err(Error::BadInput {
            details: format!(
                "{asked} has no SOA for {zone} ({}); check --zone, or pass the zone's primary as --server",
                soa.rcode
            ),
        });
    };
    if let Some(server) = options.server {
        return Ok(Primary {
            address: server,
            serial: Some(serial),
        });
    }
    let address = wire
        .resolve(mname.trim_end_matches('.'), 53)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::BadInput {
            details: format!(
                "the zone's primary {mname} (its SOA MNAME) has no address; pass it as --server ADDR[:PORT]"
            ),
        })?;
    Ok(Primary {
        address,
        serial: Some(serial),
    })
}

fn serial(wire: &dyn DnsWire, server: SocketAddr, zone: &str) -> Option<u32> {
    wire.query(server, &fqdn(zone), RecordKind::Soa)
        .ok()?
        .records
        .iter()
        .find_map(|record| match record {
            Rdata::Soa { serial, .. } => Some(*serial),
            _ => None,
        })
}

/// The name's A and AAAA sets at the primary.
fn address_sets(wire: &dyn DnsWire, server: SocketAddr, name: &str) -> Result<Vec<Rrset>> {
    let mut sets = Vec::new();
    for kind in [RecordKind::A, RecordKind::Aaaa] {
        let answer = wire.query(server, &fqdn(name), kind)?;
        sets.extend(rrset_of(&answer, kind));
    }
    Ok(sets)
}

fn need_key(options: &DnsOptions) -> Result<&TsigKey> {
    options.key.as_ref().ok_or_else(|| Error::BadInput {
        details: "the dns method changes records only with a TSIG key: pass --tsig-key-file FILE \
                  (BIND's key format, as `tsig-keygen` writes it)"
            .to_owned(),
    })
}

/// Sends one change; on NXRRSET reads the set again: when it is now as
/// wanted, an earlier try went through (a retry), else someone changed it.
fn send(wire: &dyn DnsWire, server: SocketAddr, key: &TsigKey, change: &RrsetChange) -> Result<()> {
    match wire.update(server, key, change)? {
        UpdateOutcome::Applied => Ok(()),
        UpdateOutcome::Rcode(rcode) => {
            let now = address_sets(wire, server, &change.name)?;
            let now = now.iter().find(|set| set.kind == change.wanted.kind);
            if rcode == "NXRRSET" && now == Some(&change.wanted) {
                return Ok(());
            }
            Err(update_error(server, &rcode, change, now))
        }
    }
}

/// The error for an update the server did not apply. Pure.
pub fn update_error(
    server: SocketAddr,
    rcode: &str,
    change: &RrsetChange,
    now: Option<&Rrset>,
) -> Error {
    match rcode {
        "NXRRSET" => Error::StateConflict {
            details: format!(
                "{} changed since it was read: it is now {} (expected {}); someone else updates \
                 this name: nothing was changed by this update; check with the zone's owner, then rerun",
                change.name,
                now.map_or("absent".to_owned(), Rrset::show),
                change.current.show()
            ),
        },
        "REFUSED" | "NOTAUTH" => Error::AuthenticationFailed {
            server: server.to_string(),
            details: format!(
                "the update of {} was answered {rcode}: the key is unknown there, wrong, or not \
                 allowed to update zone {} (BIND: `update-policy {{ grant KEY ... }}` or \
                 `allow-update {{ key KEY; }}`); nothing was changed",
                change.name, change.zone
            ),
        },
        "NOTZONE" => Error::BadInput {
            details: format!(
                "{server} is not the primary of {} (NOTZONE); pass the primary as --server",
                change.zone
            ),
        },
        other => Error::CommandFailed {
            command: format!("DNS update to {server}: {}", change.display()),
            status: other.to_owned(),
            output: String::new(),
            hint: "the server did not apply it; see its log".to_owned(),
        },
    }
}

struct Session<'a> {
    wire: &'a dyn DnsWire,
    options: &'a DnsOptions,
    server: SocketAddr,
    report: DnsReport,
    /// Whether an update went through: only then is a failure half-way.
    records_changed: bool,
}

fn session<'a>(
    wire: &'a dyn DnsWire,
    options: &'a DnsOptions,
    action: &str,
) -> Result<Session<'a>> {
    check_target(&options.target)?;
    let primary = primary(wire, options)?;
    let before = address_sets(wire, primary.address, &options.target.name)?;
    let notes: Vec<String> = other_family_note(&options.target, &before)
        .into_iter()
        .collect();
    Ok(Session {
        wire,
        options,
        server: primary.address,
        records_changed: false,
        report: DnsReport {
            action: action.to_owned(),
            method: "dns".to_owned(),
            ok: true,
            changed: false,
            target: options.target.clone(),
            server: primary.address.to_string(),
            saved_state: saved_state_path(&options.instance),
            after: before.clone(),
            before,
            serial_before: primary.serial,
            serial_after: primary.serial,
            caches_expire_at: None,
            steps: Vec::new(),
            servers: Vec::new(),
            notes,
        },
    })
}

impl Session<'_> {
    fn planned(&mut self, phase: &str, step: DnsStep) {
        self.report.steps.push(DnsStepReport {
            phase: phase.to_owned(),
            display: step.display(),
            step,
            outcome: "planned".to_owned(),
        });
    }

    fn done(&mut self, phase: &str, step: DnsStep) {
        self.report.changed = true;
        self.report.steps.push(DnsStepReport {
            phase: phase.to_owned(),
            display: step.display(),
            step,
            outcome: "done".to_owned(),
        });
    }

    fn update(&mut self, phase: &str, purpose: &str, change: RrsetChange) -> Result<()> {
        let key = need_key(self.options)?;
        send(self.wire, self.server, key, &change).map_err(|error| {
            if !self.records_changed {
                return error;
            }
            Error::StepFailed {
                instance: self.options.instance.as_str().to_owned(),
                step: format!("{phase}: {purpose}"),
                details: format!(
                    "{error}; done before it: [{}]; rerun the same command once fixed, or \
                     `cmw-upgrade cutover revert --method dns` to restore the saved records",
                    self.report
                        .steps
                        .iter()
                        .map(|step| step.display.clone())
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
            }
        })?;
        self.records_changed = true;
        self.done(
            phase,
            DnsStep::Update {
                purpose: purpose.to_owned(),
                change,
            },
        );
        Ok(())
    }

    fn finish(mut self) -> Result<DnsReport> {
        if self.report.changed {
            self.report.after = address_sets(self.wire, self.server, &self.options.target.name)?;
            self.report.serial_after = serial(self.wire, self.server, &self.options.target.zone);
        }
        Ok(self.report)
    }
}

fn saved_for(options: &DnsOptions, executor: &dyn Executor) -> Result<Option<SavedDnsState>> {
    let saved = read_saved_state(executor, &options.instance)?;
    if let Some(saved) = &saved {
        let same = fqdn(&saved.target.name) == fqdn(&options.target.name)
            && saved.target.old == options.target.old
            && saved.target.new == options.target.new;
        if !same {
            return Err(Error::StateConflict {
                details: format!(
                    "{} holds a dns cut-over of {} ({} -> {}) not yet finished or reverted; \
                     finish or revert it first, with those values",
                    saved_state_path(&options.instance),
                    saved.target.name,
                    saved.target.old,
                    saved.target.new
                ),
            });
        }
    }
    Ok(saved)
}

/// Every change `prepare`, `apply` and `finish` would make now, in order; sends nothing.
///
/// # Errors
/// As the queries: the zone or name not there, a server that does not answer.
pub fn plan(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
) -> Result<DnsReport> {
    let mut session = session(wire, options, "plan")?;
    let saved = saved_for(options, executor)?;
    let sets = session.report.before.clone();
    let target = &options.target;
    let kind = swapped_kind(target);
    // What each later move starts from: the sets as the earlier ones leave them.
    let mut expected = sets.clone();
    let path = saved_state_path(&options.instance);
    match &saved {
        None => {
            let (changes, until) = plan_prepare(target, &sets, options.lowered_ttl, options.now)?;
            session.planned("prepare", DnsStep::SaveState { path: path.clone() });
            for change in changes {
                if let Some(set) = expected
                    .iter_mut()
                    .find(|set| set.kind == change.wanted.kind)
                {
                    *set = change.wanted.clone();
                }
                session.planned(
                    "prepare",
                    DnsStep::Update {
                        purpose: "lower the TTL".to_owned(),
                        change,
                    },
                );
            }
            let ttl = sets.iter().map(|set| set.ttl).max().unwrap_or(0);
            session.planned("apply", DnsStep::WaitCaches { until, ttl });
            session.report.caches_expire_at = Some(until);
        }
        Some(saved) => {
            session.report.caches_expire_at = Some(saved.caches_expire_at);
            if options.now < saved.caches_expire_at {
                let ttl = saved.original.iter().map(|set| set.ttl).max().unwrap_or(0);
                session.planned(
                    "apply",
                    DnsStep::WaitCaches {
                        until: saved.caches_expire_at,
                        ttl,
                    },
                );
            }
        }
    }
    let current = expected.iter().find(|set| set.kind == kind).cloned();
    if let Some(swap) = plan_swap(target, current.as_ref(), None, 0, true)? {
        if let Some(set) = expected.iter_mut().find(|set| set.kind == kind) {
            *set = swap.wanted.clone();
        }
        session.planned(
            "apply",
            DnsStep::Update {
                purpose: "swap the address".to_owned(),
                change: swap,
            },
        );
    }
    let original = saved
        .as_ref()
        .map_or(sets.clone(), |saved| saved.original.clone());
    let restore_from = SavedDnsState {
        format: SAVED_FORMAT,
        method: "dns".to_owned(),
        saved_at: options.stamp.clone(),
        target: target.clone(),
        server: session.report.server.clone(),
        original,
        lowered_ttl: options.lowered_ttl,
        caches_expire_at: 0,
        caches_expire_at_utc: String::new(),
        switched: true,
    };
    for change in plan_restore(&restore_from, &expected, false)? {
        session.planned(
            "finish",
            DnsStep::Update {
                purpose: "restore the TTL".to_owned(),
                change,
            },
        );
    }
    session.planned(
        "finish",
        DnsStep::KeepStateBeside {
            path: kept_path(options, "finished"),
        },
    );
    session.finish()
}

fn kept_path(options: &DnsOptions, what: &str) -> String {
    format!(
        "/var/lib/cmw-upgrade/{}/cutover-dns.{what}.{}.json",
        options.instance.as_str(),
        options.stamp
    )
}

/// Lowers the TTL of the name's address sets and saves what was there (see
/// the module's documentation). Running it again changes nothing more.
///
/// # Errors
/// [`Error::StateConflict`] when the old address is not there or a saved
/// state is for another switch; [`Error::AuthenticationFailed`] for a key the
/// server does not accept; as the queries otherwise.
pub fn prepare(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
) -> Result<DnsReport> {
    let _lock = super::lock(executor, &options.instance)?;
    need_key(options)?;
    let mut session = session(wire, options, "prepare")?;
    if let Some(saved) = saved_for(options, executor)? {
        // Prepared before: the saved sets are the originals; lower what went back up.
        session.report.caches_expire_at = Some(saved.caches_expire_at);
        let sets = session.report.before.clone();
        let lowered: Vec<Rrset> = sets
            .iter()
            .filter(|set| set.ttl > saved.lowered_ttl)
            .cloned()
            .collect();
        for set in lowered {
            let wanted = Rrset {
                ttl: saved.lowered_ttl,
                ..set.clone()
            };
            session.update(
                "prepare",
                "lower the TTL",
                change(&options.target, &set, wanted),
            )?;
        }
        return session.finish();
    }
    let sets = session.report.before.clone();
    let (changes, until) = plan_prepare(&options.target, &sets, options.lowered_ttl, options.now)?;
    let path = saved_state_path(&options.instance);
    let saved = SavedDnsState {
        format: SAVED_FORMAT,
        method: "dns".to_owned(),
        saved_at: options.stamp.clone(),
        target: options.target.clone(),
        server: session.report.server.clone(),
        original: sets,
        lowered_ttl: options.lowered_ttl,
        caches_expire_at: until,
        caches_expire_at_utc: crate::exec::utc_stamp(system_time(until)),
        switched: false,
    };
    // Saved before the first update, so a crash after it still knows the original TTL.
    write_saved_state(executor, &path, &saved)?;
    session.done("prepare", DnsStep::SaveState { path: path.clone() });
    for (number, change) in changes.into_iter().enumerate() {
        if let Err(error) = session.update("prepare", "lower the TTL", change) {
            if number == 0 {
                // No record changed: a saved state would only stand in the way.
                let _ = executor.remove(&path);
            }
            return Err(error);
        }
    }
    session.report.caches_expire_at = Some(until);
    session.finish()
}

/// Swaps the old address for the new one (see the module's documentation).
///
/// # Errors
/// [`Error::StateConflict`] before the caches have expired (without force) or
/// when someone else changed the set (the message shows it); as [`prepare`].
pub fn apply(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
) -> Result<DnsReport> {
    let _lock = super::lock(executor, &options.instance)?;
    need_key(options)?;
    let mut session = session(wire, options, "apply")?;
    let path = saved_state_path(&options.instance);
    let saved = saved_for(options, executor)?;
    session.report.caches_expire_at = saved.as_ref().map(|saved| saved.caches_expire_at);
    let kind = swapped_kind(&options.target);
    let current = session
        .report
        .before
        .iter()
        .find(|set| set.kind == kind)
        .cloned();
    let Some(swap) = plan_swap(
        &options.target,
        current.as_ref(),
        saved.as_ref(),
        options.now,
        options.force,
    )?
    else {
        return session.finish();
    };
    let existed = saved.is_some();
    let mut saved = match saved {
        Some(saved) => saved,
        // Forced without prepare: the sets as they are now are what revert restores.
        None => SavedDnsState {
            format: SAVED_FORMAT,
            method: "dns".to_owned(),
            saved_at: options.stamp.clone(),
            target: options.target.clone(),
            server: session.report.server.clone(),
            original: session.report.before.clone(),
            lowered_ttl: current.as_ref().map_or(0, |set| set.ttl),
            caches_expire_at: options.now,
            caches_expire_at_utc: crate::exec::utc_stamp(system_time(options.now)),
            switched: false,
        },
    };
    let before = saved.clone();
    saved.switched = true;
    write_saved_state(executor, &path, &saved)?;
    session.done("apply", DnsStep::SaveState { path: path.clone() });
    if let Err(error) = session.update("apply", "swap the address", swap) {
        // The address did not change: the saved state goes back to what it said.
        let _ = if existed {
            write_saved_state(executor, &path, &before)
        } else {
            executor.remove(&path)
        };
        return Err(error);
    }
    session.finish()
}

/// Restores the TTL saved by `prepare` (the addresses stay as they are) and
/// keeps the saved state beside.
///
/// # Errors
/// [`Error::StateConflict`] with no saved state; as [`prepare`].
pub fn finish(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
) -> Result<DnsReport> {
    restore(executor, wire, options, "finish")
}

/// Restores the addresses and TTL saved before the first change, and keeps
/// the saved state beside.
///
/// # Errors
/// As [`finish`].
pub fn revert(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
) -> Result<DnsReport> {
    restore(executor, wire, options, "revert")
}

fn restore(
    executor: &dyn Executor,
    wire: &dyn DnsWire,
    options: &DnsOptions,
    action: &str,
) -> Result<DnsReport> {
    let _lock = super::lock(executor, &options.instance)?;
    need_key(options)?;
    let path = saved_state_path(&options.instance);
    let saved = saved_for(options, executor)?.ok_or_else(|| Error::StateConflict {
        details: format!(
            "no saved dns cut-over state at {path}: nothing was prepared for {} (or it was \
             finished or reverted already); `cmw-upgrade cutover plan --method dns` shows the records now",
            options.instance.as_str()
        ),
    })?;
    let mut session = session(wire, options, action)?;
    let changes = plan_restore(&saved, &session.report.before, action == "revert")?;
    let purpose = if action == "revert" {
        "restore the address and TTL"
    } else {
        "restore the TTL"
    };
    for change in changes {
        session.update(action, purpose, change)?;
    }
    let kept = kept_path(
        options,
        if action == "revert" {
            "reverted"
        } else {
            "finished"
        },
    );
    executor.rename(&path, &kept)?;
    session.done(action, DnsStep::KeepStateBeside { path: kept });
    session.finish()
}

/// How often the servers are asked again while waiting.
const POLL: Duration = Duration::from_millis(500);

/// Asks every authoritative server of the zone (its NS set) and each
/// resolver given, until all answer the new address or the timeout; the
/// report's `servers` is the table, `ok` whether all do.
///
/// # Errors
/// As the queries to the primary (the zone or its NS set not there).
pub fn verify(wire: &dyn DnsWire, options: &DnsOptions) -> Result<DnsReport> {
    let mut session = session(wire, options, "verify")?;
    let zone = fqdn(&options.target.zone);
    let ns = wire.query(session.server, &zone, RecordKind::Ns)?;
    let mut servers: Vec<(String, String, Option<SocketAddr>, Option<String>)> = Vec::new();
    for record in &ns.records {
        let Rdata::Ns { host } = record else { continue };
        match ns_address(wire, session.server, host, options.ns_port) {
            Ok(address) => {
                servers.push(("authoritative".into(), host.clone(), Some(address), None))
            }
            Err(error) => servers.push((
                "authoritative".into(),
                host.clone(),
                None,
                Some(error.to_string()),
            )),
        }
    }
    for resolver in &options.resolvers {
        servers.push((
            "resolver".into(),
            resolver.to_string(),
            Some(*resolver),
            None,
        ));
    }
    let kind = swapped_kind(&options.target);
    let started = Instant::now();
    loop {
        let table: Vec<ServerAnswer> = servers
            .iter()
            .map(|(role, server, address, error)| {
                let mut row = ServerAnswer {
                    role: role.clone(),
                    server: server.clone(),
                    address: address.map_or("-".to_owned(), |address| address.to_string()),
                    answer: Vec::new(),
                    ttl: None,
                    ok: false,
                    error: error.clone(),
                };
                if let Some(address) = address {
                    match wire.query(*address, &fqdn(&options.target.name), kind) {
                        Ok(answer) => {
                            let set = rrset_of(&answer, kind);
                            row.ok = answers_new(&options.target, set.as_ref());
                            row.ttl = set.as_ref().map(|set| set.ttl);
                            row.answer = set.map(|set| set.addresses).unwrap_or_default();
                            if answer.rcode != "NOERROR" {
                                row.error = Some(answer.rcode);
                            }
                        }
                        Err(error) => row.error = Some(error.to_string()),
                    }
                }
                row
            })
            .collect();
        let all = !table.is_empty() && table.iter().all(|row| row.ok);
        if all || started.elapsed() >= options.verify_timeout {
            session.report.ok = all;
            session.report.servers = table;
            return session.finish();
        }
        std::thread::sleep(POLL);
    }
}

/// An NS host's address: the primary's answer first (in-zone hosts have
/// their address in the zone), else this machine's resolver.
fn ns_address(
    wire: &dyn DnsWire,
    primary: SocketAddr,
    host: &str,
    port: u16,
) -> Result<SocketAddr> {
    for kind in [RecordKind::A, RecordKind::Aaaa] {
        if let Ok(answer) = wire.query(primary, host, kind) {
            if let Some(set) = rrset_of(&answer, kind) {
                if let Some(address) = set.addresses.first() {
                    return Ok(SocketAddr::new(*address, port));
                }
            }
        }
    }
    wire.resolve(host.trim_end_matches('.'), port)?
        .into_iter()
        .next()
        .ok_or_else(|| Error::BadInput {
            details: format!("the zone's server {host} has no address"),
        })
}

/// `ADDR`, `ADDR:PORT`, `[V6]:PORT` or a bare IPv6 address; port 53 by default.
///
/// # Errors
/// A sentence saying what is expected.
pub fn parse_server(text: &str) -> std::result::Result<SocketAddr, String> {
    if let Ok(address) = text.parse::<SocketAddr>() {
        return Ok(address);
    }
    if let Ok(address) = text.parse::<IpAddr>() {
        return Ok(SocketAddr::new(address, 53));
    }
    Err(format!(
        "{text:?} is not an address: pass ADDR or ADDR:PORT (IPv6: [ADDR]:PORT)"
    ))
}

#[cfg(test)]
#[path = "dns_tests.rs"]
mod tests;
