//! The load scenario of issue 11 at CI size (`theater_tests::load`; the full 1,000 × 1,000 run is
//! `benches/load.rs`): 40 receivers, children of a supervisor, each sent 100 messages through the message-server
//! by 8 sender actors at once, while the supervisor restarts a tenth of them. Every accepted message must be
//! delivered exactly once, in order, to the incarnation that was up (the count in its state and its chain's
//! events), every refusal must fall while its receiver was down, and every chain must verify.
//!
//! Two runs: one whose restarts race with the messages on their way to the receiver being restarted (the issue's
//! scenario), one whose senders wait for each restart before they send to its receiver. The second also shows
//! that the check fails on its logs with one message lost, dropped at a stop, duplicated, miscounted, reordered,
//! misrouted, or refused while its receiver was up.

use std::time::Duration;

use theater_tests::load::{self, Delivered, LoadConfig, LoadOutcome, Refusal, check};

/// The CI-sized run, its restarts racing with the messages in flight.
const CONFIG: LoadConfig = LoadConfig {
    actors: 40,
    messages_per_actor: 100,
    restart_fraction: 0.1,
    senders: 8,
    batch: 25,
    race_restarts: true,
};

/// A bound on the whole run so a hang fails instead of blocking CI; not an assertion about speed.
const HANG_GUARD: Duration = Duration::from_secs(300);

async fn run(config: &LoadConfig) -> LoadOutcome {
    tokio::time::timeout(HANG_GUARD, load::run(config))
        .await
        .expect("the load scenario hung")
        .expect("the load scenario ran")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_exactly_once_while_restarts_race_with_messages_in_flight() {
    let outcome = run(&CONFIG).await;
    assert_exactly_once(&outcome);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_exactly_once_when_each_restart_waits_for_its_receivers_messages() {
    let config = LoadConfig {
        race_restarts: false,
        ..CONFIG
    };
    let outcome = run(&config).await;
    assert_exactly_once(&outcome);
    // Nothing was in flight to a receiver when it stopped, and nothing was sent to it while it was down.
    assert_eq!(outcome.report.check.refused_down, 0);
    assert_eq!(outcome.report.syncs_failed, 0);
    assert_eq!(outcome.report.restarts_with_refusals, 0);
    for r in &outcome.receivers {
        assert_eq!(r.accepted, (0..100).collect::<Vec<u32>>());
    }
    // The check fails on the same logs with one fault put in.
    tampered_logs_fail_the_check(&outcome);
}

/// Asserts everything a run of [`CONFIG`]'s shape must show: exactly once, figures that add up, one restart per
/// tenth of the receivers with an incarnation before and after it, every chain verified.
fn assert_exactly_once(outcome: &LoadOutcome) {
    let report = &outcome.report;
    let c = &report.check;
    println!("{report}");

    // Exactly once, and every other property the check covers.
    assert!(c.is_exactly_once(), "{report}");
    assert_eq!(c.violations(), 0);
    assert!(c.problems.is_empty(), "{:?}", c.problems);

    // The message figures add up: every message was sent once, and each was accepted or refused while down.
    let messages = (CONFIG.actors * CONFIG.messages_per_actor) as u64;
    assert_eq!(c.sent, messages);
    assert_eq!(c.accepted + c.refused_down, messages);
    assert_eq!(c.delivered, c.accepted);
    assert_eq!(c.refused_other, 0);
    let refused: u64 = report.refusal_reasons.values().sum();
    assert_eq!(refused, c.refused_down);
    for reason in report.refusal_reasons.keys() {
        assert!(
            reason == "actor <id> not found" || reason == "actor <id> does not accept messages",
            "{reason}"
        );
    }
    // Only a restarted receiver refuses, so at most its share of the messages could be.
    assert!(c.refused_down < (4 * CONFIG.messages_per_actor) as u64);

    // Four restarts (a tenth of 40), each of its own receiver, made through the supervisor's restart-child.
    assert_eq!(CONFIG.restarted(), 4);
    assert_eq!(report.restarts, 4);
    assert_eq!(outcome.supervisor_restarts, 4);
    assert_eq!(outcome.supervisor_spawns, CONFIG.actors as u64);
    assert!(report.restarts_with_refusals <= 4);
    assert!(report.restart_max >= report.restart_mean && report.restart_mean > Duration::ZERO);
    let restarted = CONFIG.restarted_indexes();
    assert_eq!(restarted, [0, 10, 20, 30]);
    assert_eq!(outcome.receivers.len(), CONFIG.actors);
    for r in &outcome.receivers {
        let expected = usize::from(restarted.contains(&(r.index as usize)));
        assert_eq!(r.restarts, expected, "receiver {}", r.index);
        assert_eq!(r.incarnations.len(), expected + 1, "receiver {}", r.index);
        assert_eq!(
            r.accepted.len() + r.refused.len(),
            CONFIG.messages_per_actor
        );
        let counted: u64 = r.incarnations.iter().map(|i| i.counted).sum();
        assert_eq!(counted, r.accepted.len() as u64, "receiver {}", r.index);
        // The restarts come after each restarted receiver's first batch, and the last round after every
        // restart: both incarnations got messages, the whole first and last batch among them.
        for inc in &r.incarnations {
            assert!(!inc.delivered.is_empty(), "receiver {}", r.index);
            assert_eq!(inc.verified, Ok(()));
        }
        let first = &r.incarnations[0].delivered;
        assert_eq!(
            first[..CONFIG.batch]
                .iter()
                .map(|d| d.seq)
                .collect::<Vec<_>>(),
            (0..25).collect::<Vec<_>>()
        );
        let last = &r.incarnations[expected].delivered;
        assert_eq!(
            last[last.len() - CONFIG.batch..]
                .iter()
                .map(|d| d.seq)
                .collect::<Vec<_>>(),
            (75..100).collect::<Vec<_>>()
        );
        if expected == 0 {
            assert!(
                r.refused.is_empty(),
                "receiver {}: {:?}",
                r.index,
                r.refused
            );
            assert_eq!(r.accepted, (0..100).collect::<Vec<u32>>());
        }
    }
    // A sync fails only for a batch to a restarted receiver in the rounds between the first and the last.
    assert!(report.syncs_failed <= 4 * (CONFIG.rounds() as u64 - 2));
    assert!(report.syncs_failed >= report.restarts_with_refusals as u64);

    // Every chain verified: 44 incarnations, 8 senders, the supervisor; each sender's send events match.
    assert_eq!(c.chains, 44 + 8 + 1);
    assert_eq!(report.chains_verified, c.chains);
    assert_eq!(outcome.supervisor_chain, Ok(()));
    let sender_accepted: u64 = outcome.senders.iter().map(|s| s.chain_ok).sum();
    let sender_refused: u64 = outcome.senders.iter().map(|s| s.chain_err).sum();
    assert_eq!(sender_accepted, c.accepted);
    assert_eq!(sender_refused, c.refused_down);
    // Each receiver incarnation's chain holds its deliveries and at least one sync; each sender's its sends.
    assert!(report.chain_events >= 2 * messages);

    // Figures: positive and consistent (their size is the bench's business).
    assert!(report.elapsed > Duration::ZERO && report.setup > Duration::ZERO);
    assert!(report.msgs_per_sec > 0.0);
    for rss in [
        report.rss_start,
        report.rss_setup,
        report.rss_traffic,
        report.rss_end,
    ] {
        assert!(rss.rss_kib > 0 && rss.peak_kib >= rss.rss_kib, "{rss:?}");
    }
    assert!(report.rss_end.peak_kib >= report.rss_traffic.peak_kib);
    assert!(report.rss_traffic.peak_kib >= report.rss_setup.rss_kib);
    assert!(report.rss_per_actor_kib() > 0.0);
    // Every running actor has recorded events (a receiver at least its last batch, a sender its sends).
    assert!(report.chain_memory_kib > 0);
}

/// Puts one fault at a time into the run's logs and asserts that [`check`] reports exactly it.
fn tampered_logs_fail_the_check(outcome: &LoadOutcome) {
    let verdict = |receivers: &[load::ReceiverLog]| {
        check(
            receivers,
            &outcome.senders,
            std::slice::from_ref(&outcome.supervisor_chain),
        )
    };
    assert!(verdict(&outcome.receivers).is_exactly_once());
    let restarted = CONFIG.restarted_indexes()[1];
    let plain = 1;
    assert!(!CONFIG.restarted_indexes().contains(&plain));

    // A message delivered twice (counted twice in state too).
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[plain].incarnations[0];
    inc.delivered.push(inc.delivered[3]);
    inc.counted += 1;
    let v = verdict(&logs);
    assert_eq!(
        (v.duplicated, v.violations()),
        (1, 2),
        "also out of order: {:?}",
        v.problems
    );
    assert!(!v.is_exactly_once());

    // A message lost (neither in the chain nor counted).
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[plain].incarnations[0];
    inc.delivered.remove(50);
    inc.counted -= 1;
    let v = verdict(&logs);
    assert_eq!((v.lost, v.violations()), (1, 1), "{:?}", v.problems);

    // The last message the old incarnation of a restarted receiver got, lost: dropped when it stopped.
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[restarted].incarnations[0];
    inc.delivered.pop();
    inc.counted -= 1;
    let v = verdict(&logs);
    assert_eq!(
        (v.dropped_at_stop, v.violations()),
        (1, 1),
        "{:?}",
        v.problems
    );

    // A message the new incarnation of a restarted receiver got, lost: within its lifetime.
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[restarted].incarnations[1];
    inc.delivered.remove(1);
    inc.counted -= 1;
    let v = verdict(&logs);
    assert_eq!((v.lost, v.violations()), (1, 1), "{:?}", v.problems);

    // The state counts one message more than the chain holds.
    let mut logs = outcome.receivers.clone();
    logs[restarted].incarnations[1].counted += 1;
    let v = verdict(&logs);
    assert_eq!((v.miscounted, v.violations()), (1, 1), "{:?}", v.problems);

    // Two messages swapped.
    let mut logs = outcome.receivers.clone();
    logs[plain].incarnations[0].delivered.swap(10, 11);
    let v = verdict(&logs);
    assert_eq!((v.reordered, v.violations()), (1, 1), "{:?}", v.problems);

    // A message of another receiver.
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[plain].incarnations[0];
    inc.delivered.push(Delivered { to: 2, seq: 1000 });
    inc.counted += 1;
    let v = verdict(&logs);
    assert_eq!((v.misrouted, v.violations()), (1, 1), "{:?}", v.problems);

    // A message delivered although its send was refused: the refusal moved into an incarnation's lifetime.
    let mut logs = outcome.receivers.clone();
    let seq = logs[plain].accepted.remove(40);
    let reason = format!("actor {} not found", logs[plain].id);
    logs[plain].refused.push(Refusal { seq, reason });
    let v = verdict(&logs);
    assert_eq!(
        (v.unexpected, v.refused_while_live, v.violations()),
        (1, 1, 2),
        "{:?}",
        v.problems
    );

    // A refusal for a full mailbox.
    let mut logs = outcome.receivers.clone();
    let inc = &mut logs[plain].incarnations[0];
    let last = inc.delivered.pop().unwrap();
    inc.counted -= 1;
    logs[plain].accepted.retain(|s| *s != last.seq);
    logs[plain].refused.push(Refusal {
        seq: last.seq,
        reason: "mailbox of x is full: 1025 items exceeds mailbox_capacity (1024)".into(),
    });
    let v = verdict(&logs);
    assert_eq!(
        (v.refused_other, v.violations()),
        (1, 1),
        "{:?}",
        v.problems
    );

    // A restart the receiver's log does not show.
    let mut logs = outcome.receivers.clone();
    logs[plain].restarts = 1;
    let v = verdict(&logs);
    assert_eq!(
        (v.wrong_incarnations, v.violations()),
        (1, 1),
        "{:?}",
        v.problems
    );

    // A chain that does not verify.
    let mut logs = outcome.receivers.clone();
    logs[plain].incarnations[0].verified = Err("event 3: hash mismatch".into());
    let v = verdict(&logs);
    assert_eq!((v.unverified, v.violations()), (1, 1), "{:?}", v.problems);

    // A sender whose chain records one send more than its scripts reported.
    let mut senders = outcome.senders.clone();
    senders[0].chain_ok += 1;
    let v = check(&outcome.receivers, &senders, &[Ok(())]);
    assert_eq!(
        (v.sender_mismatch, v.violations()),
        (1, 1),
        "{:?}",
        v.problems
    );
}
