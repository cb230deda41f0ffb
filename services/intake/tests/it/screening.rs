//! Screening commands arriving together are screened in one transaction, each in a savepoint
//! of its own: ten referrals' commands, three of them delivered twice at the same moment, and one
//! for a referral the council does not hold. Each referral is screened once, the duplicates are
//! recognised, the bad command fails alone, and the others commit (together, on PostgreSQL's
//! evidence of the top-level transaction each decision was stored in).
use super::batch::distinct_family;
use super::{Env, stored};
use eh_bus::{Handled, Handler, Received};
use eh_intake::screening::{self, ScreenReferralHandler};
use eh_proto::intake::v1::ScreenReferral;
use futures::future::join_all;
use prost::Message;
use sea_orm::ConnectionTrait;
use std::collections::BTreeMap;

fn command(e: &Env, id: usize, referral_id: &str) -> Received {
    let cmd = ScreenReferral {
        case_id: format!("case-{id}"),
        referral_id: referral_id.into(),
    };
    let mut headers = BTreeMap::new();
    headers.insert(
        "Eh-Id".to_string(),
        format!("0190f000-0000-7000-8000-{id:012}"),
    );
    Received {
        subject: eh_proto::catalogue::SCREEN_REFERRAL.subject(e.ctx.namespace(), "worcs"),
        headers,
        payload: cmd.encode_to_vec().into(),
        delivered: 1,
        stream_seq: 1,
    }
}

async fn count(e: &Env, sql: &str) -> (i64, i64) {
    let r = e
        .db()
        .query_one_raw(eh_store::stmt(e.db().get_database_backend(), sql, []))
        .await
        .unwrap()
        .unwrap();
    (
        r.try_get_by_index(0).unwrap(),
        r.try_get_by_index(1).unwrap(),
    )
}

pub async fn screening_commands_arriving_together_are_screened_once_each(e: Env) {
    let mut referrals = Vec::new();
    for i in 1..=10 {
        referrals.push(stored(&e.intake, "worcs", distinct_family(i)).await);
    }
    if e.postgres() {
        e.db()
            .execute_unprepared(
                "CREATE TABLE decisions_stored_in (top_xid TEXT NOT NULL);
                 CREATE FUNCTION note_top_xid() RETURNS trigger LANGUAGE plpgsql AS
                   $$ BEGIN INSERT INTO decisions_stored_in VALUES (pg_current_xact_id()::text); RETURN NEW; END $$;
                 CREATE TRIGGER note_top_xid AFTER INSERT ON screening_decisions
                   FOR EACH ROW EXECUTE FUNCTION note_top_xid()",
            )
            .await
            .unwrap();
    }
    let rules = screening::rules_from_settings(&e.ctx.settings).unwrap();
    let handler = ScreenReferralHandler::new(e.ctx.clone(), rules);
    let mut commands: Vec<Received> = referrals
        .iter()
        .enumerate()
        .map(|(i, r)| command(&e, i, &r.id))
        .collect();
    commands.extend(commands[..3].to_vec());
    commands.push(command(&e, 99, "no-such-referral"));
    let results = join_all(commands.iter().map(|m| handler.handle(m))).await;
    let (mut done, mut duplicates, mut failed) = (0, 0, Vec::new());
    for r in results {
        match r {
            Ok(Handled::Done) => done += 1,
            Ok(Handled::Duplicate) => duplicates += 1,
            Err(e) => failed.push(e.to_string()),
        }
    }
    assert_eq!((done, duplicates), (10, 3), "{failed:?}");
    assert_eq!(failed.len(), 1);
    assert!(failed[0].contains("no-such-referral"), "{failed:?}");
    assert_eq!(
        count(
            &e,
            "SELECT COUNT(*), COUNT(DISTINCT referral_id) FROM screening_decisions"
        )
        .await,
        (10, 10)
    );
    let (decided, _) = count(
        &e,
        "SELECT COUNT(*), COUNT(*) FROM eh_outbox WHERE subject LIKE '%.screening_decided'",
    )
    .await;
    assert_eq!(decided, 10);
    if e.postgres() {
        let (decisions, transactions) = count(
            &e,
            "SELECT COUNT(*), COUNT(DISTINCT top_xid) FROM decisions_stored_in",
        )
        .await;
        assert_eq!(decisions, 10);
        assert!(
            transactions < 10,
            "{transactions} transactions for 10 commands: not batched"
        );
    }
}
