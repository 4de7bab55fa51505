//! [`DnsWire`] over TCP with hickory: queries, and RFC 2136 updates signed
//! with TSIG. TCP only: a UDP retry of an update that was applied comes back
//! NXRRSET and would read as someone else's change.
//!
//! hickory is async; each call makes a current-thread tokio runtime and
//! drops it before returning, so nothing async leaks out of this file.

// Reads this machine's /etc/resolv.conf: the DNS traffic goes from here (the
// machine running the tool), not from a server the executor reaches.
#![allow(clippy::disallowed_methods)]

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::proto::op::{update_message, DnsRequest, DnsRequestOptions, Message, Query};
use hickory_net::proto::rr::rdata::{A, AAAA};
use hickory_net::proto::rr::{Name, RData, RecordSet, RecordType, TSigner};
use hickory_net::runtime::TokioRuntimeProvider;
use hickory_net::tcp::TcpClientStream;
use hickory_net::xfer::{DnsExchange, DnsMultiplexer};
use hickory_net::DnsHandle;

use super::dns::{Answer, DnsWire, Rdata, RecordKind, Rrset, RrsetChange, UpdateOutcome};
use super::dns_key::{TsigAlgorithm, TsigKey};
use crate::error::{Error, Result};

/// The DNS traffic of the cut-over, as it really goes.
#[derive(Debug, Clone)]
pub struct HickoryWire {
    /// The longest one exchange (connect, send, answer) may take.
    pub timeout: Duration,
}

impl Default for HickoryWire {
    fn default() -> Self {
        HickoryWire {
            timeout: Duration::from_secs(5),
        }
    }
}

/// The seconds of clock difference a signed update may have (BIND's default).
const FUDGE: u16 = 300;

fn name(text: &str) -> Result<Name> {
    Name::from_ascii(text).map_err(|error| Error::BadInput {
        details: format!("{text:?} is not a DNS name: {error}"),
    })
}

fn record_type(kind: RecordKind) -> RecordType {
    match kind {
        RecordKind::A => RecordType::A,
        RecordKind::Aaaa => RecordType::AAAA,
        RecordKind::Soa => RecordType::SOA,
        RecordKind::Ns => RecordType::NS,
    }
}

fn record_set(owner: &Name, set: &Rrset) -> RecordSet {
    let mut records = RecordSet::new(owner.clone(), record_type(set.kind), 0);
    records.set_ttl(set.ttl);
    for address in &set.addresses {
        records.add_rdata(match address {
            IpAddr::V4(v4) => RData::A(A(*v4)),
            IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
        });
    }
    records
}

fn signer(key: &TsigKey) -> Result<TSigner> {
    use hickory_net::proto::rr::rdata::tsig::TsigAlgorithm as Hmac;
    let algorithm = match key.algorithm {
        TsigAlgorithm::HmacSha256 => Hmac::HmacSha256,
        TsigAlgorithm::HmacSha384 => Hmac::HmacSha384,
        TsigAlgorithm::HmacSha512 => Hmac::HmacSha512,
    };
    TSigner::new(key.secret.clone(), algorithm, name(&key.name)?, FUDGE).map_err(|error| {
        Error::BadInput {
            details: format!("the TSIG key {} cannot sign: {error}", key.name),
        }
    })
}

impl HickoryWire {
    /// Runs one exchange with `server` on a runtime of its own.
    fn exchange(
        &self,
        server: SocketAddr,
        signer: Option<TSigner>,
        message: Message,
    ) -> Result<std::result::Result<Message, String>> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| Error::Internal {
                details: format!("no async runtime for the DNS exchange: {error}"),
            })?;
        let timeout = self.timeout;
        Ok(runtime.block_on(async move {
            let provider = TokioRuntimeProvider::new();
            let (connect, handle) = TcpClientStream::new(server, None, Some(timeout), provider);
            let stream = connect.await.map_err(|error| error.to_string())?;
            let mut multiplexer = DnsMultiplexer::new(stream, handle).with_timeout(timeout);
            if let Some(signer) = signer {
                multiplexer = multiplexer.with_signer(signer);
            }
            let (exchange, background): (DnsExchange<TokioRuntimeProvider>, _) =
                DnsExchange::from_stream(multiplexer);
            let background = tokio::spawn(background);
            let answer = exchange
                .send(DnsRequest::new(message, DnsRequestOptions::default()))
                .next()
                .await;
            background.abort();
            match answer {
                Some(Ok(response)) => Ok(response.into_message()),
                Some(Err(error)) => Err(error.to_string()),
                None => Err("no answer".to_owned()),
            }
        }))
    }
}

fn rcode(message: &Message) -> String {
    message
        .metadata
        .response_code
        .to_str()
        .to_uppercase()
        .replace(' ', "")
}

impl DnsWire for HickoryWire {
    fn query(&self, server: SocketAddr, asked: &str, kind: RecordKind) -> Result<Answer> {
        let mut message = Message::query();
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(name(asked)?, record_type(kind)));
        let response =
            self.exchange(server, None, message)?
                .map_err(|details| Error::CommandFailed {
                    command: format!("DNS query {asked} {} to {server} (TCP)", kind.as_str()),
                    status: "no answer".to_owned(),
                    output: details,
                    hint:
                        "check that the server listens on TCP there and this machine may reach it"
                            .to_owned(),
                })?;
        let wanted = record_type(kind);
        let records = response
            .answers
            .iter()
            .filter(|record| record.record_type() == wanted)
            .filter_map(|record| match &record.data {
                RData::A(a) => Some(Rdata::Address {
                    ttl: record.ttl,
                    address: IpAddr::V4(a.0),
                }),
                RData::AAAA(aaaa) => Some(Rdata::Address {
                    ttl: record.ttl,
                    address: IpAddr::V6(aaaa.0),
                }),
                RData::SOA(soa) => Some(Rdata::Soa {
                    mname: soa.mname.to_ascii(),
                    serial: soa.serial,
                }),
                RData::NS(ns) => Some(Rdata::Ns {
                    host: ns.0.to_ascii(),
                }),
                _ => None,
            })
            .collect();
        Ok(Answer {
            rcode: rcode_name(&response),
            records,
        })
    }

    fn update(
        &self,
        server: SocketAddr,
        key: &TsigKey,
        change: &RrsetChange,
    ) -> Result<UpdateOutcome> {
        let zone = name(&change.zone)?;
        let owner = name(&change.name)?;
        // compare_and_swap asserts this; checked so a bad name is an error, not a panic.
        if !zone.zone_of(&owner) {
            return Err(Error::BadInput {
                details: format!("{} is not in zone {}", change.name, change.zone),
            });
        }
        let message = update_message::compare_and_swap(
            record_set(&owner, &change.current),
            record_set(&owner, &change.wanted),
            zone,
            true,
        );
        match self.exchange(server, Some(signer(key)?), message)? {
            Ok(response) => {
                let code = rcode_name(&response);
                Ok(if code == "NOERROR" {
                    UpdateOutcome::Applied
                } else {
                    UpdateOutcome::Rcode(code)
                })
            }
            // hickory reports a signature it cannot check (BIND answers a bad
            // key with an empty MAC) as a "truncated HMAC"; any TSIG or HMAC
            // complaint means the server and the tool do not share this key.
            Err(details)
                if ["hmac", "tsig", "signature", "badkey", "badsig"]
                    .iter()
                    .any(|word| details.to_ascii_lowercase().contains(word)) =>
            {
                Err(Error::AuthenticationFailed {
                    server: server.to_string(),
                    details: format!(
                        "the update of {} signed with key {} was not accepted ({details}): the \
                         key's name, algorithm or secret differs from the server's; nothing was changed",
                        change.name, key.name
                    ),
                })
            }
            Err(details) => Err(Error::CommandFailed {
                command: format!("DNS update to {server} (TCP): {}", change.display()),
                status: "no answer".to_owned(),
                output: details,
                hint: "check that the primary listens on TCP there; the update may not have been \
                       applied: `cmw-upgrade cutover plan --method dns` shows the records now"
                    .to_owned(),
            }),
        }
    }

    fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>> {
        (host, port)
            .to_socket_addrs()
            .map(Iterator::collect)
            .map_err(|error| Error::BadInput {
                details: format!(
                    "{host} does not resolve on this machine ({error}); pass the server's address"
                ),
            })
    }

    fn system_resolver(&self) -> Result<SocketAddr> {
        let path = "/etc/resolv.conf";
        let text = std::fs::read_to_string(path).map_err(|error| Error::io("read", path, error))?;
        first_nameserver(&text).ok_or_else(|| Error::BadInput {
            details: format!(
                "{path} names no nameserver to find the zone's primary; pass it as --server ADDR[:PORT]"
            ),
        })
    }
}

/// The response code's mnemonic (`NOERROR`, `NXRRSET`, `REFUSED`, ...).
fn rcode_name(message: &Message) -> String {
    use hickory_net::proto::op::ResponseCode;
    match message.metadata.response_code {
        ResponseCode::NoError => "NOERROR",
        ResponseCode::FormErr => "FORMERR",
        ResponseCode::ServFail => "SERVFAIL",
        ResponseCode::NXDomain => "NXDOMAIN",
        ResponseCode::NotImp => "NOTIMP",
        ResponseCode::Refused => "REFUSED",
        ResponseCode::YXDomain => "YXDOMAIN",
        ResponseCode::YXRRSet => "YXRRSET",
        ResponseCode::NXRRSet => "NXRRSET",
        ResponseCode::NotAuth => "NOTAUTH",
        ResponseCode::NotZone => "NOTZONE",
        _ => return rcode(message),
    }
    .to_owned()
}

/// The first `nameserver` of a resolv.conf. Pure.
pub fn first_nameserver(text: &str) -> Option<SocketAddr> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("nameserver"))
            .then(|| words.next()?.parse::<IpAddr>().ok())
            .flatten()
            .map(|address| SocketAddr::new(address, 53))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_nameserver_of_resolv_conf() {
        let text = "# generated\nsearch example.com\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n";
        assert_eq!(first_nameserver(text), Some("10.0.0.2:53".parse().unwrap()));
        assert_eq!(first_nameserver("search x\n"), None);
    }
}
