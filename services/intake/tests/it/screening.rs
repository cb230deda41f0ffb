//! Screening commands arriving together are screened in one transaction, each in a savepoint
//! of its own: ten referrals' commands, three of them delivered twice at the same moment, and one
//! for a referral the council does not hold. Each referral is screened once, the duplicates are
//! recognised, the bad command fails alone, and the others commit (together, on PostgreSQL's
//! evidence of the top-level transaction each decision was stored in).
use super::batch::distinct_family;
use super::{Env, stored};
use eh_bus::{Handled, Handler, Received};
use eh_intake::handlers::screening::ScreenReferralHandler;
use eh_intake::settings::rules_from_settings;
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
    let stored_in = match e.postgres() {
        true => Some(
            eh_testkit::TopTransactions::watch(e.db(), "screening_decisions")
                .await
                .unwrap(),
        ),
        false => None,
    };
    let rules = rules_from_settings(&e.ctx.settings).unwrap();
    let handler = ScreenReferralHandler::new(e.ctx.clone(), rules);
    let mut commands: Vec<Received> = referrals
        .iter()
        .enumerate()
        .map(|(i, r)| command(&e, i, &r.id))
        .collect();
    commands.extend(commands[..3].to_vec());
    commands.push(command(&e, 99, "no-such-referral"));
    let results = join_all(commands.iter().map(|m| handler.handle(m))).await;
    let (done, duplicates, failed) =
        eh_testkit::tally(results, &Handled::Done, &Handled::Duplicate);
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
    if let Some(stored_in) = stored_in {
        let (decisions, transactions) = stored_in.count(e.db()).await.unwrap();
        assert_eq!(decisions, 10);
        assert!(
            transactions < 10,
            "{transactions} transactions for 10 commands: not batched"
        );
    }
}
