//! The checkpoint and restart barriers.
//!
//! A checkpoint walks every member through `suspended` → `written` →
//! `CheckpointDone`. Nothing is final until every member has written its
//! temporary image; only then does `Release(written)` let them rename, so a
//! failure before that point leaves the previous image set intact. Any
//! failure (a `CheckpointFailed`, a lost connection, a protocol violation)
//! aborts the generation for everyone still in it: no member ever waits for
//! a peer that will not come.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use hiber_protocol::{CheckpointOptions, CheckpointResult, FromCoord, barrier};
use mio::Token;
use tracing::{debug, info, warn};

use crate::conn::{Conn, Proc};
use crate::{Coordinator, FIRST_JOIN_TIMEOUT, script};

/// How far a member got; ordered.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Step {
    Started = 0,
    Suspended = 1,
    Written = 2,
    Done = 3,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Phase {
    /// Waiting for every member's `suspended`.
    Suspending,
    /// `Release(suspended)` sent; waiting for every `written`.
    Writing,
    /// `Release(written)` sent; waiting for every `CheckpointDone`.
    Committing,
}

struct Member {
    label: String,
    host: String,
    step: Step,
    image: Option<String>,
    /// Its connected TCP sockets (`TcpEnds`), if it has any.
    tcp: Vec<hiber_protocol::TcpEnd>,
}

pub(crate) struct Checkpoint {
    generation: u64,
    options: CheckpointOptions,
    /// The control client waiting for the result (`None`: the interval timer).
    pub requester: Option<Token>,
    phase: Phase,
    members: HashMap<Token, Member>,
    /// `reached[s]`: members whose step is at least `s` (O(1) barrier checks).
    reached: [usize; 4],
    started: Instant,
    /// When members that have not suspended are asked again.
    pub ask_again: Instant,
}

impl Checkpoint {
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// When the timer must run next for this checkpoint, if ever.
    pub fn next_ask(&self) -> Option<Instant> {
        (self.phase == Phase::Suspending).then_some(self.ask_again)
    }

    /// `token` is one of this checkpoint's members (finished or not).
    pub fn has_member(&self, token: Token) -> bool {
        self.members.contains_key(&token)
    }

    pub fn member_tokens(&self) -> impl Iterator<Item = Token> + '_ {
        self.members.keys().copied()
    }

    /// `token` takes part and has not finished yet.
    pub fn is_pending(&self, token: Token) -> bool {
        self.members
            .get(&token)
            .is_some_and(|m| m.step != Step::Done)
    }
}

pub(crate) struct Restart {
    generation: u64,
    expected: u32,
    /// Restarted processes waiting at the `restored` barrier.
    waiting: Vec<Token>,
    started: std::time::Instant,
}

/// A pending restart nobody has joined for this long is stale (its
/// processes died before reconnecting) and a new `RestartBegin` replaces it.
const STALE_RESTART: std::time::Duration = std::time::Duration::from_secs(10);
/// How often members that have not suspended are asked again.
const ASK_AGAIN: std::time::Duration = std::time::Duration::from_millis(20);

impl Coordinator {
    pub(crate) fn interval_tick(&mut self) {
        if self.ckpt.is_some() || self.restart.is_some() || self.process_count() == 0 {
            debug!("interval checkpoint skipped: busy or no process");
            return;
        }
        let options = CheckpointOptions {
            dir: String::new(),
            compress: None,
            sync: None,
        };
        self.request_checkpoint(None, options);
    }

    pub(crate) fn request_checkpoint(
        &mut self,
        requester: Option<Token>,
        options: CheckpointOptions,
    ) {
        let restoring = self
            .conns
            .values()
            .filter_map(Conn::process)
            .find(|p| p.restoring);
        let refusal = if let Some(ck) = &self.ckpt {
            Some(format!(
                "a checkpoint is already in progress (generation {})",
                ck.generation
            ))
        } else if let Some(r) = &self.restart {
            Some(format!(
                "a restart is in progress ({} of {} processes restored)",
                r.waiting.len(),
                r.expected
            ))
        } else {
            restoring.map(|p| format!("process {} is still restarting", p.label()))
        };
        let members: HashMap<Token, Member> = self
            .conns
            .iter()
            .filter(|(_, c)| !c.dead)
            .filter_map(|(t, c)| c.process().filter(|p| !p.exiting).map(|p| (*t, p)))
            .map(|(t, p)| {
                let m = Member {
                    label: p.label(),
                    host: p.host.clone(),
                    step: Step::Started,
                    image: None,
                    tcp: Vec::new(),
                };
                (t, m)
            })
            .collect();
        let refusal = refusal.or_else(|| {
            members
                .is_empty()
                .then(|| "no processes to checkpoint".into())
        });
        if let Some(reason) = refusal {
            match requester {
                Some(t) => self.send(t, &FromCoord::Error(reason)),
                None => debug!("interval checkpoint not started: {reason}"),
            }
            return;
        }
        let generation = self.generation + 1;
        info!(generation, processes = members.len(), "checkpoint started");
        let tokens: Vec<Token> = members.keys().copied().collect();
        let msg = FromCoord::Checkpoint {
            generation,
            options: options.clone(),
        };
        self.ckpt = Some(Checkpoint {
            generation,
            options,
            requester,
            phase: Phase::Suspending,
            reached: [members.len(), 0, 0, 0],
            members,
            started: Instant::now(),
            ask_again: Instant::now() + ASK_AGAIN,
        });
        for t in tokens {
            self.send(t, &msg);
        }
    }

    /// A `Barrier` message: checkpoint barriers here, `restored` below,
    /// any other name is a user barrier (`user_barrier.rs`).
    pub(crate) fn on_barrier(&mut self, token: Token, generation: u64, name: &str) {
        // It answers: its checkpoint thread runs.
        if let Some(p) = self.conns.get_mut(&token).and_then(Conn::process_mut) {
            p.dormant = false;
        }
        if name == barrier::RESTORED {
            return self.on_restored(token, generation);
        }
        if barrier::is_user(name) {
            return self.on_user_barrier(token, name);
        }
        let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.generation == generation) else {
            debug!(
                ?token,
                generation, name, "barrier of no running checkpoint ignored"
            );
            return;
        };
        let expected = match name {
            barrier::SUSPENDED => (Phase::Suspending, Step::Started, Step::Suspended),
            barrier::WRITTEN => (Phase::Writing, Step::Suspended, Step::Written),
            // The empty name: `from == to` makes `member_step` report it.
            _ => (ck.phase, Step::Done, Step::Done),
        };
        self.member_step(token, expected, &format!("barrier {name:?}"), None);
    }

    pub(crate) fn on_checkpoint_done(
        &mut self,
        token: Token,
        generation: u64,
        image: String,
        bytes: u64,
    ) {
        if self
            .ckpt
            .as_ref()
            .is_none_or(|ck| ck.generation != generation)
        {
            debug!(
                ?token,
                generation, "CheckpointDone of no running checkpoint ignored"
            );
            return;
        }
        debug!(?token, %image, bytes, "image committed");
        let expected = (Phase::Committing, Step::Written, Step::Done);
        self.member_step(token, expected, "CheckpointDone", Some(image));
    }

    /// Moves member `token` from `from` to `to`, which is only legal in
    /// `phase`; anything else is a protocol violation that fails the checkpoint.
    fn member_step(
        &mut self,
        token: Token,
        (phase, from, to): (Phase, Step, Step),
        what: &str,
        image: Option<String>,
    ) {
        let Some(ck) = self.ckpt.as_mut() else { return };
        let Some(m) = ck.members.get_mut(&token) else {
            debug!(
                ?token,
                "{what} from a process outside the checkpoint ignored"
            );
            return;
        };
        if ck.phase != phase || m.step != from || from == to {
            let error = format!(
                "unexpected {what} (process at {:?}, checkpoint at {:?})",
                m.step, ck.phase
            );
            let label = m.label.clone();
            return self.fail_checkpoint(Some(token), &label, &error);
        }
        m.step = to;
        m.image = image.or(m.image.take());
        ck.reached[to as usize] += 1;
        self.advance_checkpoint();
    }

    pub(crate) fn on_checkpoint_failed(&mut self, token: Token, generation: u64, error: &str) {
        let Some(ck) = self.ckpt.as_ref().filter(|ck| ck.generation == generation) else {
            return;
        };
        let Some(m) = ck.members.get(&token).filter(|m| m.step != Step::Done) else {
            return;
        };
        let label = m.label.clone();
        self.fail_checkpoint(Some(token), &label, error);
    }

    /// A member's connection closed. Before it suspended, it is left out
    /// as if it had announced its exit: the process is gone (it exited,
    /// exec'd into a new image that joins on its own, or crashed), so the
    /// computation at the checkpoint's moment has no such process. After
    /// that, its image is part of the generation and the checkpoint fails.
    pub(crate) fn checkpoint_member_gone(&mut self, token: Token, p: &Proc, why: &str) {
        let before_suspend = self.ckpt.as_ref().is_some_and(|ck| {
            ck.phase == Phase::Suspending
                && ck
                    .members
                    .get(&token)
                    .is_some_and(|m| m.step == Step::Started)
        });
        if before_suspend {
            return self.checkpoint_member_exiting(token, &p.label());
        }
        if self.ckpt.as_ref().is_some_and(|ck| ck.is_pending(token)) {
            self.fail_checkpoint(Some(token), &p.label(), why);
        }
    }

    /// A process joined while a checkpoint is stopping processes: it takes
    /// part (a child forked by a member joins before `fork` returns, while
    /// its parent still runs, so the generation must include it). Once every
    /// member has stopped, nobody in the computation can create a process
    /// any more; one joining from outside then waits for the next
    /// generation.
    pub(crate) fn checkpoint_joined(&mut self, token: Token, label: String, host: String) {
        let Some(ck) = self.ckpt.as_mut() else { return };
        if ck.phase != Phase::Suspending || ck.members.contains_key(&token) {
            return;
        }
        info!(process = %label, generation = ck.generation, "process joined a running checkpoint");
        ck.members.insert(
            token,
            Member {
                label,
                host,
                step: Step::Started,
                image: None,
                tcp: Vec::new(),
            },
        );
        ck.reached[0] += 1;
        let msg = FromCoord::Checkpoint {
            generation: ck.generation,
            options: ck.options.clone(),
        };
        self.send(token, &msg);
    }

    /// Asks every dormant member that has not suspended yet again (timer):
    /// a process whose checkpoint thread is not started yet (`dormant.rs`
    /// in the agent) may have had to let the first request pass, and each
    /// message raises its signal again; an exec'd one may have lost the
    /// request with its old image. A repeat is ignored by a member that is
    /// already in the checkpoint.
    pub(crate) fn checkpoint_ask_again_all(&mut self, now: Instant) {
        let Some(ck) = self.ckpt.as_mut() else { return };
        if ck.phase != Phase::Suspending || now < ck.ask_again {
            return;
        }
        ck.ask_again = now + ASK_AGAIN;
        let started: Vec<Token> = ck
            .members
            .iter()
            .filter(|(_, m)| m.step == Step::Started)
            .map(|(t, _)| *t)
            .collect();
        let waiting: Vec<Token> = started
            .into_iter()
            .filter(|t| {
                self.conns
                    .get(t)
                    .and_then(Conn::process)
                    .is_some_and(|p| p.dormant)
            })
            .collect();
        for t in waiting {
            self.checkpoint_ask_again(t);
        }
    }

    /// Sends the running checkpoint's request again to `token` if it is a
    /// member that has not suspended yet.
    pub(crate) fn checkpoint_ask_again(&mut self, token: Token) {
        let Some(ck) = self.ckpt.as_ref() else { return };
        let waiting = ck.phase == Phase::Suspending
            && ck
                .members
                .get(&token)
                .is_some_and(|m| m.step == Step::Started);
        if waiting {
            let msg = FromCoord::Checkpoint {
                generation: ck.generation,
                options: ck.options.clone(),
            };
            self.send(token, &msg);
        }
    }

    /// A member announced its exit. One that has not suspended yet is simply
    /// left out (its image is not needed: it will not exist at restart).
    pub(crate) fn checkpoint_member_exiting(&mut self, token: Token, label: &str) {
        let Some(ck) = self.ckpt.as_mut() else { return };
        let leaves = ck.phase == Phase::Suspending
            && ck
                .members
                .get(&token)
                .is_some_and(|m| m.step == Step::Started);
        if !leaves {
            return;
        }
        ck.members.remove(&token);
        ck.reached[0] -= 1;
        info!(process = %label, generation = ck.generation, "process exited before suspending; left out");
        if ck.members.is_empty() {
            return self.fail_checkpoint(None, "checkpoint", "every process exited");
        }
        self.advance_checkpoint();
    }

    fn advance_checkpoint(&mut self) {
        let Some(ck) = self.ckpt.as_mut() else { return };
        let all = ck.members.len();
        let (release, next) = match ck.phase {
            Phase::Suspending if ck.reached[Step::Suspended as usize] == all => {
                (barrier::SUSPENDED, Phase::Writing)
            }
            Phase::Writing if ck.reached[Step::Written as usize] == all => {
                (barrier::WRITTEN, Phase::Committing)
            }
            Phase::Committing if ck.reached[Step::Done as usize] == all => {
                return self.finish_checkpoint();
            }
            _ => return,
        };
        ck.phase = next;
        if release == barrier::SUSPENDED {
            self.send_tcp_plans();
        }
        let Some(ck) = self.ckpt.as_mut() else { return };
        debug!(generation = ck.generation, release, "barrier released");
        let msg = FromCoord::Release {
            generation: ck.generation,
            name: release.to_string(),
        };
        let tokens: Vec<Token> = ck.members.keys().copied().collect();
        for t in tokens {
            self.send(t, &msg);
        }
    }

    /// A member's `TcpEnds`: kept until every member has suspended.
    pub(crate) fn on_tcp_ends(
        &mut self,
        token: Token,
        generation: u64,
        ends: Vec<hiber_protocol::TcpEnd>,
    ) {
        let Some(ck) = self.ckpt.as_mut().filter(|ck| ck.generation == generation) else {
            return;
        };
        if let Some(m) = ck.members.get_mut(&token) {
            m.tcp = ends;
        }
    }

    /// Every member has suspended: the ones that listed TCP sockets learn
    /// which have a peer in the computation (`tcp.rs`), before the release.
    fn send_tcp_plans(&mut self) {
        let Some(ck) = self.ckpt.as_ref() else { return };
        let mut members: Vec<(&Token, &Member)> = ck
            .members
            .iter()
            .filter(|(_, m)| !m.tcp.is_empty())
            .collect();
        if members.is_empty() {
            return;
        }
        // Leaders by joining order, whatever the map's order.
        members.sort_by_key(|(t, _)| t.0);
        let listed: Vec<crate::tcp::Listed<'_, Token>> = members
            .iter()
            .map(|(t, m)| crate::tcp::Listed {
                key: **t,
                host: &m.host,
                ends: &m.tcp,
            })
            .collect();
        let plans = crate::tcp::plan(&listed);
        let mut marker = vec![0u8; 32];
        if let Err(e) = hiber_protocol::cookie::fill_random(&mut marker) {
            warn!("no random marker for TCP draining: {e}");
            marker
                .iter_mut()
                .enumerate()
                .for_each(|(i, b)| *b = i as u8 ^ 0xa5);
        }
        let generation = ck.generation;
        for (token, ends) in plans {
            let msg = FromCoord::TcpPlan {
                generation,
                marker: marker.clone(),
                ends,
            };
            self.send(token, &msg);
        }
    }

    fn finish_checkpoint(&mut self) {
        let Some(ck) = self.ckpt.take() else { return };
        let mut images: Vec<(String, String)> = ck
            .members
            .values()
            .filter_map(|m| Some((m.host.clone(), m.image.clone()?)))
            .collect();
        images.sort_by(|a, b| a.1.cmp(&b.1));
        self.generation = ck.generation;
        let dir = self.script_dir(&ck.options, &images);
        let text = script::render(
            &self.config.hiber_exe,
            &self.addr_string,
            self.computation,
            ck.generation,
            &images,
        );
        let mut errors = Vec::new();
        let restart_script = match script::write(&dir, &text) {
            Ok(p) => Some(p.to_string_lossy().into_owned()),
            Err(e) => {
                let path = dir.join(script::SCRIPT_NAME);
                errors.push(format!("restart script {}: {e}", path.display()));
                None
            }
        };
        info!(
            generation = ck.generation,
            processes = images.len(),
            elapsed_ms = ck.started.elapsed().as_millis() as u64,
            "checkpoint complete"
        );
        let result = CheckpointResult {
            generation: ck.generation,
            images: images.into_iter().map(|(_, p)| p).collect(),
            errors,
            restart_script,
        };
        if let Some(t) = ck.requester {
            self.send(t, &FromCoord::CheckpointResult(result));
        }
    }

    /// The restart script goes to the requested directory, else next to the
    /// images when they share one, else to the configured directory.
    fn script_dir(&self, options: &CheckpointOptions, images: &[(String, String)]) -> PathBuf {
        if !options.dir.is_empty() {
            return PathBuf::from(&options.dir);
        }
        let mut parents = images.iter().map(|(_, p)| Path::new(p).parent());
        if let Some(Some(first)) = parents.next()
            && first.is_absolute()
            && parents.all(|p| p == Some(first))
        {
            return first.to_path_buf();
        }
        self.config.ckpt_dir.clone()
    }

    /// Abandons the running checkpoint: every member that has not finished
    /// (except `culprit`, which has resumed or is gone) gets `Abort`, and the
    /// requester gets the error. The generation counter does not advance.
    fn fail_checkpoint(&mut self, culprit: Option<Token>, label: &str, error: &str) {
        let Some(ck) = self.ckpt.take() else { return };
        // Before any `Abort`: members blocked in a user barrier of this
        // checkpoint must not wait for the culprit, which has resumed.
        if let Some(t) = culprit {
            self.user_barriers_checkpoint_failed(ck.generation, t);
        }
        let reason = format!("{label}: {error}");
        warn!(generation = ck.generation, "checkpoint failed: {reason}");
        let msg = FromCoord::Abort {
            generation: ck.generation,
            reason: reason.clone(),
        };
        let mut images = Vec::new();
        for (t, m) in &ck.members {
            match &m.image {
                Some(image) => images.push(image.clone()),
                None if Some(*t) != culprit => self.send(*t, &msg),
                None => {}
            }
        }
        images.sort();
        let result = CheckpointResult {
            generation: ck.generation,
            images,
            errors: vec![reason],
            restart_script: None,
        };
        if let Some(t) = ck.requester {
            self.send(t, &FromCoord::CheckpointResult(result));
        }
    }

    // ---- restart ----

    pub(crate) fn restart_begin(
        &mut self,
        computation: u64,
        generation: u64,
        processes: u32,
        ckpt_dir: String,
    ) -> FromCoord {
        if let Some(ck) = &self.ckpt {
            return FromCoord::Error(format!(
                "a checkpoint is in progress (generation {})",
                ck.generation
            ));
        }
        if let Some(r) = &self.restart
            && r.waiting.is_empty()
            && r.started.elapsed() > STALE_RESTART
        {
            warn!(
                generation = r.generation,
                "replacing a restart none of whose processes came back"
            );
            self.restart = None;
        }
        if let Some(r) = &self.restart {
            return FromCoord::Error(format!(
                "a restart is already in progress (generation {}, {} of {} processes restored)",
                r.generation,
                r.waiting.len(),
                r.expected
            ));
        }
        let count = self.process_count();
        if count > 0 && computation != self.computation {
            return FromCoord::Error(format!(
                "this coordinator already runs computation {:016x} with {count} process(es); \
                 use another port for computation {computation:016x}",
                self.computation
            ));
        }
        info!(
            computation = format_args!("{computation:016x}"),
            generation, processes, "restart begins"
        );
        self.computation = computation;
        self.generation = generation;
        self.failed_restart = None;
        if !ckpt_dir.is_empty() {
            self.config.ckpt_dir = PathBuf::from(ckpt_dir);
        }
        if processes > 0 {
            self.restart = Some(Restart {
                generation,
                expected: processes,
                waiting: Vec::new(),
                started: std::time::Instant::now(),
            });
            if self.config.exit_on_last && count == 0 {
                self.empty_deadline = Some(Instant::now() + FIRST_JOIN_TIMEOUT);
            }
        }
        FromCoord::Ok
    }

    fn on_restored(&mut self, token: Token, generation: u64) {
        if let Some((g, reason)) = self
            .failed_restart
            .clone()
            .filter(|(g, _)| *g == generation)
        {
            return self.send(
                token,
                &FromCoord::Abort {
                    generation: g,
                    reason,
                },
            );
        }
        let Some(r) = self.restart.as_mut() else {
            // No `RestartBegin`: nobody to wait for.
            return self.release_restored(&[token], generation);
        };
        if generation != r.generation {
            let reason = format!(
                "image of generation {generation}, but this restart is of generation {}",
                r.generation
            );
            return self.send(token, &FromCoord::Abort { generation, reason });
        }
        if !r.waiting.contains(&token) {
            r.waiting.push(token);
        }
        if r.waiting.len() >= r.expected as usize {
            let waiting = std::mem::take(&mut r.waiting);
            self.restart = None;
            info!(generation, processes = waiting.len(), "restart complete");
            self.release_restored(&waiting, generation);
        }
    }

    fn release_restored(&mut self, tokens: &[Token], generation: u64) {
        let msg = FromCoord::Release {
            generation,
            name: barrier::RESTORED.to_string(),
        };
        for &t in tokens {
            if let Some(p) = self.conns.get_mut(&t).and_then(Conn::process_mut) {
                p.restoring = false;
            }
            self.send(t, &msg);
        }
    }

    /// A restarted process vanished before the `restored` barrier: the
    /// computation cannot be complete, so everyone in the restart is aborted.
    pub(crate) fn restart_member_gone(&mut self, _token: Token, p: &Proc, why: &str) {
        if !p.restoring {
            return;
        }
        let Some(r) = self.restart.take() else { return };
        let reason = format!("{} {why} during the restart", p.label());
        warn!(generation = r.generation, "restart failed: {reason}");
        let msg = FromCoord::Abort {
            generation: r.generation,
            reason: reason.clone(),
        };
        for t in r.waiting {
            self.send(t, &msg);
        }
        self.failed_restart = Some((r.generation, reason));
    }
}
