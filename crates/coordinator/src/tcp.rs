//! Pairing the TCP sockets of a computation at a checkpoint.
//!
//! Only the coordinator sees every process, so only it can tell whether a
//! TCP socket's peer belongs to the computation: each process that has
//! connected TCP sockets lists them (`TcpEnds`, with its threads stopped),
//! and when every process has suspended the coordinator pairs the ends —
//! one end's local address is the other's remote address and the other way
//! round — and answers each process with a `TcpPlan`. Addresses on the
//! loopback network only mean something on one host, so those pairs are
//! looked for among the ends of the same host.
//!
//! A socket shared by several processes (inherited through `fork`) is
//! listed by each; the first to list it is its leader, the one that saves
//! its data. A pair is drained (both sides read their data out of the
//! kernel up to the peer's marker, then have it echoed back) only when one
//! end still has unacknowledged bytes: otherwise every byte in flight is in
//! a receive queue already and peeking at it is enough.

use hiber_protocol::{TcpEnd, TcpRole};
use std::collections::HashMap;

/// One process's list, with its host.
pub(crate) struct Listed<'a, K> {
    pub key: K,
    pub host: &'a str,
    pub ends: &'a [TcpEnd],
}

/// Every process's roles, in the order of `listed`.
pub(crate) fn plan<K: Clone>(listed: &[Listed<'_, K>]) -> Vec<(K, Vec<TcpRole>)> {
    // Who leads each socket, and where each connection end is.
    let mut leader: HashMap<(&str, u64), usize> = HashMap::new();
    let mut by_key: HashMap<(&str, &str, &str), &TcpEnd> = HashMap::new();
    for (i, l) in listed.iter().enumerate() {
        for e in l.ends {
            leader.entry((l.host, e.inode)).or_insert(i);
            by_key.insert(TcpEnd::key(l.host, &e.local, &e.remote), e);
        }
    }
    listed
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let roles = l
                .ends
                .iter()
                .map(|e| {
                    let peer = by_key
                        .get(&TcpEnd::key(l.host, &e.remote, &e.local))
                        .copied();
                    // A socket connected to itself (or a listing of the same
                    // end twice) is not a pair.
                    let peer = peer.filter(|p| p.inode != e.inode || e.local != e.remote);
                    TcpRole {
                        inode: e.inode,
                        internal: peer.is_some(),
                        leader: leader.get(&(l.host, e.inode)) == Some(&i),
                        drain: peer.is_some_and(|p| {
                            e.established && p.established && (e.unsent > 0 || p.unsent > 0)
                        }),
                    }
                })
                .collect();
            (l.key.clone(), roles)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn end(inode: u64, local: &str, remote: &str, unsent: u32) -> TcpEnd {
        TcpEnd {
            inode,
            local: local.into(),
            remote: remote.into(),
            established: true,
            unsent,
        }
    }

    #[test]
    fn pairs_are_found_and_outside_peers_are_not() {
        let a = [
            end(1, "127.0.0.1:5000", "127.0.0.1:40000", 0),
            end(2, "10.0.0.1:41000", "93.184.216.34:80", 0),
        ];
        let b = [end(3, "127.0.0.1:40000", "127.0.0.1:5000", 7)];
        let listed = [
            Listed {
                key: 'a',
                host: "h1",
                ends: &a,
            },
            Listed {
                key: 'b',
                host: "h1",
                ends: &b,
            },
        ];
        let p = plan(&listed);
        assert_eq!(
            p[0].1[0],
            TcpRole {
                inode: 1,
                internal: true,
                leader: true,
                drain: true
            }
        );
        assert!(!p[0].1[1].internal, "a web server is outside");
        assert!(p[1].1[0].internal && p[1].1[0].drain);
    }

    #[test]
    fn loopback_pairs_stay_on_their_host_and_quiet_ones_are_peeked() {
        let a = [end(1, "127.0.0.1:5000", "127.0.0.1:40000", 0)];
        let b = [end(9, "127.0.0.1:40000", "127.0.0.1:5000", 0)];
        let c = [end(1, "[::1]:7", "[::1]:8", 0)];
        let listed = |hb: &'static str| {
            [
                Listed {
                    key: 0,
                    host: "h1",
                    ends: &a[..],
                },
                Listed {
                    key: 1,
                    host: hb,
                    ends: &b[..],
                },
                Listed {
                    key: 2,
                    host: "h1",
                    ends: &c[..],
                },
            ]
        };
        let p = plan(&listed("h2"));
        assert!(!p[0].1[0].internal && !p[1].1[0].internal);
        let p = plan(&listed("h1"));
        assert!(
            p[0].1[0].internal && !p[0].1[0].drain,
            "nothing unsent: peek"
        );
        assert!(!p[2].1[0].internal);
    }

    #[test]
    fn a_shared_socket_has_one_leader() {
        let a = [end(1, "10.0.0.1:5000", "10.0.0.2:6000", 0)];
        let b = [end(2, "10.0.0.2:6000", "10.0.0.1:5000", 0)];
        let listed = [
            Listed {
                key: 0,
                host: "h1",
                ends: &a[..],
            },
            Listed {
                key: 1,
                host: "h1",
                ends: &a[..],
            },
            Listed {
                key: 2,
                host: "h2",
                ends: &b[..],
            },
        ];
        let p = plan(&listed);
        assert!(p[0].1[0].leader && !p[1].1[0].leader && p[2].1[0].leader);
        assert!(p.iter().all(|(_, r)| r[0].internal));
    }
}
