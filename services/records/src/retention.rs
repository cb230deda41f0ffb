//! The retention sweep: every council's families evaluated against its policy on a timer; a
//! family whose records are due and under no legal hold is destroyed — records orders it (an
//! event every service acts on) and forgets the family's ids in the same transaction, keeping a
//! certificate of counts, the rule and dates.
use crate::domain::{self, Policy};
use crate::store;
use eh_bus::{Envelope, OutboundMessage, ServiceContext};
use eh_proto::catalogue;
use eh_proto::records::v1 as pb;
use prost::Message;
use sea_orm::DbErr;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// One pass over every council; the number of destructions ordered.
///
/// # Errors
/// The database failed (the next pass tries again; each family is its own transaction).
pub async fn sweep(
    ctx: &ServiceContext,
    policies: &BTreeMap<String, Policy>,
) -> Result<usize, DbErr> {
    let now = ctx.clock.now();
    let today = now.date_naive();
    let mut ordered = 0;
    for (tenant, policy) in policies {
        let txn = eh_store::begin_scoped(&ctx.db, tenant).await?;
        let roots = store::root_families(&txn, tenant).await;
        eh_store::end_read(txn).await?;
        for root in roots? {
            let txn = eh_store::begin_scoped(&ctx.db, tenant).await?;
            let group = store::family_group(&txn, tenant, &root).await?;
            let facts = store::facts_of(&txn, tenant, &group).await?;
            let Some(due) = domain::due(policy, &facts).filter(|d| *d <= today) else {
                eh_store::end_read(txn).await?;
                continue;
            };
            if store::held(&txn, tenant, &group).await? {
                eh_store::end_read(txn).await?;
                continue;
            }
            let ids = store::ids_of(&txn, tenant, &group).await?;
            let sources = store::sources_of(&txn, tenant, &group).await?;
            let id = uuid::Uuid::now_v7().to_string();
            let spec = &catalogue::DESTRUCTION_ORDERED;
            let env = Envelope::new(spec.payload, tenant, "service:records", now);
            let event = pb::DestructionOrdered {
                destruction_id: id.clone(),
                family_ids: ids.family.clone(),
                person_ids: ids.person.clone(),
                referral_ids: ids.referral.clone(),
                case_ids: ids.case.clone(),
                rule: policy.name(),
                at: now.to_rfc3339(),
                sources,
            };
            let msg = OutboundMessage::event(
                spec.subject(ctx.namespace(), tenant),
                &env,
                event.encode_to_vec(),
            );
            let count = |v: &Vec<String>| i64::try_from(v.len()).unwrap_or(i64::MAX);
            let first = store::order_destruction(
                &txn,
                tenant,
                &store::Destruction {
                    id: id.clone(),
                    rule: policy.name(),
                    due_on: due,
                    ordered_at: now,
                    event_id: msg.msg_id.clone(),
                    referrals: count(&ids.referral),
                    people: count(&ids.person),
                    cases: count(&ids.case),
                },
                &ids,
            )
            .await?;
            if !first {
                // Another replica ordered it first.
                eh_store::end_read(txn).await?;
                continue;
            }
            ctx.outbox
                .enqueue(&txn, &msg)
                .await
                .map_err(|e| DbErr::Custom(e.to_string()))?;
            eh_store::commit(txn).await?;
            tracing::info!(
                tenant,
                destruction_id = id,
                rule = policy.name(),
                "destruction ordered"
            );
            ordered += 1;
        }
    }
    Ok(ordered)
}

/// Sweeps every `every` until shutdown.
pub async fn run(ctx: ServiceContext, policies: Arc<BTreeMap<String, Policy>>, every: Duration) {
    loop {
        if let Err(e) = sweep(&ctx, &policies).await {
            tracing::warn!(error = %e, "retention sweep failed; the next pass tries again");
        }
        tokio::select! {
            () = ctx.shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
