//! Fault injection from outside, as an operations team sees it (issues 18 and 15). The real
//! binary runs as two processes in distributed mode (`--target intake,notifications` and
//! `--target consent,casework`) on a PostgreSQL cluster of the test's own, owned by an ordinary
//! role, a NATS JetStream server of its own (file store) and an SMTP server in the test. An
//! independent client publishes consented, in-area referrals, each about a different family, to
//! `eh.<tenant>.inbound.referral` at a steady rate while faults are injected: PostgreSQL's
//! sessions terminated mid-transaction, PostgreSQL stopped for a while and started again, each
//! process killed by SIGKILL and restarted, the NATS server killed by SIGKILL and restarted. Once
//! the platform has settled, everything is counted and printed: referrals stored, cases and their
//! states, each consumer's inbox against the events published to it, screening commands and
//! decisions, dead letters, the emails per recipient, template and Message-ID, how long each
//! process took to be ready again and how long emails waited. It must be 0 lost, 0 duplicated,
//! 0 dead letters, and no email twice.
//!
//! `cargo test --test chaos` runs the short version; `just chaos` the long one beside the same
//! load without faults.
mod harness;

use harness::{Plan, compare, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killed_processes_a_nats_crash_and_a_postgres_outage_lose_nothing_and_send_nothing_twice()
-> anyhow::Result<()> {
    let report = run(Plan::short()).await?;
    report.print();
    report.verdict()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "several minutes: run by `just chaos`"]
async fn long_run_of_every_fault_under_steady_load_beside_the_same_load_without_faults()
-> anyhow::Result<()> {
    let plan = Plan::long();
    let calm = run(plan.without_faults()).await?;
    calm.print();
    let chaos = run(plan).await?;
    chaos.print();
    compare(&calm, &chaos);
    match (calm.verdict(), chaos.verdict()) {
        (Ok(()), Ok(())) => Ok(()),
        (a, b) => {
            let errors: Vec<String> = [a, b]
                .into_iter()
                .filter_map(|r| r.err().map(|e| e.to_string()))
                .collect();
            anyhow::bail!(errors.join("\n"))
        }
    }
}
