//! User barriers: `hiber_barrier(name)` from a plugin event or a callback.
//!
//! A `Barrier` whose name is not one of the protocol's own
//! ([`barrier::RESERVED`](hiber_protocol::barrier::RESERVED)) waits until
//! every participant has sent a barrier of that name, then every process
//! that arrived gets `Release { generation: 0, name }`. The generation the
//! agent sends is ignored: plugins name their barriers, and a name is
//! reusable as soon as it has been released.
//!
//! **Who participates** is fixed when the first process arrives, because
//! the set must not depend on processes that will never call the barrier:
//! - during a checkpoint, when the first arrival is one of its members, the
//!   checkpoint's members (a process that joined after the checkpoint
//!   started gets no events for it, so it would never arrive);
//! - otherwise every process connected at that moment that has not
//!   announced its exit.
//!
//! A process that arrives without being a participant (it joined later) is
//! released with the others. **Nobody waits for a process that will not
//! come:** a participant that disconnects or announces its exit is dropped
//! and the barrier is recounted against the rest; so is the process whose
//! `CheckpointFailed` ends the checkpoint a barrier's participants were
//! taken from (it resumes without further events). The release is sent
//! before any `Abort` of the same event, so an agent blocked in
//! `hiber_barrier` returns before it sees the checkpoint end.

use std::collections::{HashMap, HashSet};

use hiber_protocol::FromCoord;
use mio::Token;
use tracing::debug;

use crate::Coordinator;
use crate::conn::Conn;

pub(crate) struct UserBarrier {
    /// Participants that have not arrived yet; empty means "release".
    missing: HashSet<Token>,
    /// Processes that arrived (a set: a repeated arrival counts once, and
    /// the check stays O(1) with thousands of processes).
    arrived: HashSet<Token>,
    /// The checkpoint generation whose members are the participants.
    checkpoint: Option<u64>,
}

/// The coordinator's open user barriers, by name.
pub(crate) type UserBarriers = HashMap<String, UserBarrier>;

impl Coordinator {
    /// A process reached user barrier `name`.
    pub(crate) fn on_user_barrier(&mut self, token: Token, name: &str) {
        if !self.user_barriers.contains_key(name) {
            let ub = self.new_user_barrier(token);
            debug!(
                name,
                participants = ub.missing.len(),
                checkpoint = ?ub.checkpoint,
                "user barrier opened"
            );
            self.user_barriers.insert(name.to_string(), ub);
        }
        let Some(ub) = self.user_barriers.get_mut(name) else {
            return;
        };
        if !ub.arrived.insert(token) {
            debug!(?token, name, "second arrival at a user barrier ignored");
            return;
        }
        ub.missing.remove(&token);
        if ub.missing.is_empty() {
            self.release_user_barrier(name);
        }
    }

    fn new_user_barrier(&self, first: Token) -> UserBarrier {
        if let Some(ck) = self.ckpt.as_ref().filter(|ck| ck.has_member(first)) {
            return UserBarrier {
                missing: ck.member_tokens().collect(),
                arrived: HashSet::new(),
                checkpoint: Some(ck.generation()),
            };
        }
        let missing = self
            .conns
            .iter()
            .filter(|(_, c)| participates(c))
            .map(|(t, _)| *t)
            .collect();
        UserBarrier {
            missing,
            arrived: HashSet::new(),
            checkpoint: None,
        }
    }

    fn release_user_barrier(&mut self, name: &str) {
        let Some(ub) = self.user_barriers.remove(name) else {
            return;
        };
        debug!(name, processes = ub.arrived.len(), "user barrier released");
        let msg = FromCoord::Release {
            generation: 0,
            name: name.to_string(),
        };
        for t in ub.arrived {
            self.send(t, &msg);
        }
    }

    /// `token` will not arrive at any barrier (it disconnected or is
    /// exiting): recount every open barrier without it.
    pub(crate) fn user_barriers_drop(&mut self, token: Token) {
        self.user_barriers_recount(|_, t| t == token);
    }

    /// The checkpoint of `generation` failed because of `culprit`, which
    /// has resumed: the barriers among that checkpoint's members stop
    /// waiting for it.
    pub(crate) fn user_barriers_checkpoint_failed(&mut self, generation: u64, culprit: Token) {
        self.user_barriers_recount(|ub, t| t == culprit && ub.checkpoint == Some(generation));
    }

    /// Removes every process for which `gone(barrier, token)` holds from
    /// the open barriers, then releases those with nobody left to wait for.
    fn user_barriers_recount(&mut self, gone: impl Fn(&UserBarrier, Token) -> bool) {
        let mut complete = Vec::new();
        let mut empty = Vec::new();
        for (name, ub) in &mut self.user_barriers {
            let drop_missing: Vec<Token> = ub
                .missing
                .iter()
                .copied()
                .filter(|t| gone(ub, *t))
                .collect();
            let drop_arrived: Vec<Token> = ub
                .arrived
                .iter()
                .copied()
                .filter(|t| gone(ub, *t))
                .collect();
            if drop_missing.is_empty() && drop_arrived.is_empty() {
                continue;
            }
            for t in &drop_missing {
                ub.missing.remove(t);
            }
            for t in &drop_arrived {
                ub.arrived.remove(t);
            }
            if ub.arrived.is_empty() {
                // Everyone who was waiting is gone; the next arrival
                // opens the barrier afresh.
                empty.push(name.clone());
            } else if ub.missing.is_empty() {
                complete.push(name.clone());
            }
        }
        for name in empty {
            debug!(%name, "user barrier dropped: every waiting process left");
            self.user_barriers.remove(&name);
        }
        complete.sort();
        for name in complete {
            self.release_user_barrier(&name);
        }
    }
}

/// Is this connection a process that still takes part in barriers?
fn participates(c: &Conn) -> bool {
    !c.dead && c.process().is_some_and(|p| !p.exiting)
}
