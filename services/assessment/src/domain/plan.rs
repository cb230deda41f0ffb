//! The Early Help plan, pure: the outcomes the family wants and the actions that get there (who,
//! what, by when), their checks, who may change what, and when an action is overdue.
//!
//! A plan belongs to one case and is set after its assessment is finalised. Each time the lead
//! sets it, the whole plan is stored as a new version (version 2 onwards says what changes); an
//! action keeps its id from one version to the next, and its progress (status) is its own, not
//! the plan's. An action unfinished after its due date (the UK midnight ending it) is overdue and
//! its owner is reminded once for that date: a practitioner at the work mailbox named on the plan,
//! the family's own actions through the lead, never the family directly.
use super::{CATEGORIES, HEADLINES, Refusal, Violation, headline_category, text};
use chrono::NaiveDate;
use std::collections::BTreeSet;

/// The most outcomes or actions in one plan.
pub const MAX_ENTRIES: usize = 100;
/// The longest "what" of an action or outcome (characters).
pub const MAX_WHAT: usize = 2000;
/// The furthest ahead an action may be due, in working days.
pub const MAX_WORKING_DAYS: u32 = 260;

/// One outcome the family wants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Outcome {
    pub headline: String,
    pub outcome: String,
    pub category: String,
}

/// Who owns an action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    Practitioner,
    Family,
}

impl OwnerKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Practitioner => "practitioner",
            OwnerKind::Family => "family",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "practitioner" => Some(OwnerKind::Practitioner),
            "family" => Some(OwnerKind::Family),
            _ => None,
        }
    }
}

/// When an action is due, as the request gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    On(NaiveDate),
    InWorkingDays(u32),
}

/// An action as a request gives it (before its due date is settled on the calendar).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionInput {
    /// Its place in the request (violations name `actions[index]`).
    pub index: usize,
    /// An earlier version's action to carry on; `None` for a new one.
    pub action_id: Option<String>,
    pub what: String,
    pub owner_kind: OwnerKind,
    pub owner: String,
    pub owner_email: String,
    pub due: Due,
    pub category: String,
    pub headline: String,
}

/// An action as a version of the plan holds it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PlannedAction {
    pub action_id: String,
    pub what: String,
    pub owner_kind: String,
    pub owner: String,
    pub owner_email: String,
    pub due_date: NaiveDate,
    pub category: String,
    pub headline: String,
}

/// An action's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActionStatus {
    Open,
    InProgress,
    Done,
    Cancelled,
}

impl ActionStatus {
    pub const ALL: &[&str] = &["open", "in_progress", "done", "cancelled"];

    pub fn as_str(self) -> &'static str {
        match self {
            ActionStatus::Open => "open",
            ActionStatus::InProgress => "in_progress",
            ActionStatus::Done => "done",
            ActionStatus::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(ActionStatus::Open),
            "in_progress" => Some(ActionStatus::InProgress),
            "done" => Some(ActionStatus::Done),
            "cancelled" => Some(ActionStatus::Cancelled),
            _ => None,
        }
    }
    /// Still to be done.
    pub fn unfinished(self) -> bool {
        matches!(self, ActionStatus::Open | ActionStatus::InProgress)
    }
}

/// Is an action in `status`, due on `due`, overdue on `today` (the UK date now)?
pub fn overdue(status: ActionStatus, due: NaiveDate, today: NaiveDate) -> bool {
    status.unfinished() && today > due
}

/// A plausible mailbox: one `@`, something either side, a dot in the domain, no spaces.
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && !s.chars().any(char::is_whitespace)
        && s.len() <= 254
}

fn category_for(
    v: &mut Vec<Violation>,
    field: &str,
    headline: &str,
    category: &str,
) -> Option<String> {
    let headline_ok = headline.is_empty() || headline_category(headline).is_some();
    if !headline_ok {
        let all: Vec<&str> = HEADLINES.iter().map(|(h, _)| *h).collect();
        v.push(Violation::new(
            format!("{field}.headline"),
            format!(
                "must be a Supporting Families headline problem: {}",
                all.join(", ")
            ),
        ));
        return None;
    }
    if category.is_empty() {
        if headline.is_empty() {
            v.push(Violation::new(
                format!("{field}.category"),
                "is required when no headline problem is given",
            ));
            return None;
        }
        return headline_category(headline).map(str::to_string);
    }
    if !CATEGORIES.contains(&category) {
        v.push(Violation::new(
            format!("{field}.category"),
            format!("must be one of {}", CATEGORIES.join(", ")),
        ));
        return None;
    }
    Some(category.to_string())
}

fn long(v: &mut Vec<Violation>, field: &str, value: &str) {
    let n = value.chars().count();
    if n == 0 {
        v.push(Violation::new(field, "is required"));
    } else if n > MAX_WHAT {
        v.push(Violation::new(
            field,
            format!("is longer than {MAX_WHAT} characters"),
        ));
    }
}

/// Checks a plan's outcomes: every violation by field, or the outcomes with their categories.
pub fn check_outcomes(outcomes: &[Outcome]) -> Result<Vec<Outcome>, Vec<Violation>> {
    let mut v = Vec::new();
    if outcomes.is_empty() {
        v.push(Violation::new(
            "outcomes",
            "give at least one outcome the family wants",
        ));
    } else if outcomes.len() > MAX_ENTRIES {
        v.push(Violation::new(
            "outcomes",
            format!("has more than {MAX_ENTRIES} entries"),
        ));
    }
    let mut out = Vec::new();
    for (i, o) in outcomes.iter().enumerate() {
        let f = format!("outcomes[{i}]");
        long(&mut v, &format!("{f}.outcome"), &o.outcome);
        if o.headline.is_empty() {
            v.push(Violation::new(format!("{f}.headline"), "is required"));
            continue;
        }
        if let Some(category) = category_for(&mut v, &f, &o.headline, &o.category) {
            out.push(Outcome {
                category,
                ..o.clone()
            });
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// What settling a plan's actions needs to know: the UK date today, how to count working days,
/// and the actions of the latest version (to carry ids on).
pub struct Settle<'a> {
    pub today: NaiveDate,
    pub add_working_days: &'a dyn Fn(u32) -> Option<NaiveDate>,
    pub previous: &'a [PlannedAction],
    /// A fresh id for a new action.
    pub new_id: &'a dyn Fn() -> String,
}

/// Checks a plan's actions and settles each one's due date: every violation by field, or the
/// actions as the new version holds them.
pub fn settle_actions(
    actions: &[ActionInput],
    s: &Settle<'_>,
) -> Result<Vec<PlannedAction>, Vec<Violation>> {
    let mut v = Vec::new();
    if actions.is_empty() {
        v.push(Violation::new("actions", "give at least one action"));
    } else if actions.len() > MAX_ENTRIES {
        v.push(Violation::new(
            "actions",
            format!("has more than {MAX_ENTRIES} entries"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for a in actions {
        let f = format!("actions[{}]", a.index);
        long(&mut v, &format!("{f}.what"), &a.what);
        text(&mut v, &format!("{f}.owner"), &a.owner, true);
        match a.owner_kind {
            OwnerKind::Practitioner if !is_email(&a.owner_email) => v.push(Violation::new(
                format!("{f}.owner_email"),
                "a practitioner's work mailbox is required (their reminders go there)",
            )),
            OwnerKind::Family if !a.owner_email.is_empty() => v.push(Violation::new(
                format!("{f}.owner_email"),
                "must be empty for the family's own actions: their reminders go through the lead",
            )),
            _ => {}
        }
        let carried = match &a.action_id {
            None => None,
            Some(id) => {
                if !seen.insert(id.as_str()) {
                    v.push(Violation::new(
                        format!("{f}.action_id"),
                        "is given twice: one entry per action",
                    ));
                }
                let prev = s.previous.iter().find(|p| &p.action_id == id);
                if prev.is_none() {
                    v.push(Violation::new(
                        format!("{f}.action_id"),
                        "is not an action of the plan's latest version (leave it empty for a new action)",
                    ));
                }
                prev
            }
        };
        let due = match a.due {
            Due::On(d) => {
                // A new or re-dated action may not be due in the past; one carried on unchanged
                // keeps its date (it may be overdue already).
                let unchanged = carried.is_some_and(|p| p.due_date == d);
                if d < s.today && !unchanged {
                    v.push(Violation::new(format!("{f}.due_date"), "is before today"));
                }
                Some(d)
            }
            Due::InWorkingDays(n) if n == 0 || n > MAX_WORKING_DAYS => {
                v.push(Violation::new(
                    format!("{f}.due_in_working_days"),
                    format!("must be from 1 to {MAX_WORKING_DAYS}"),
                ));
                None
            }
            Due::InWorkingDays(n) => {
                let d = (s.add_working_days)(n);
                if d.is_none() {
                    v.push(Violation::new(
                        format!("{f}.due_in_working_days"),
                        "falls outside the council's calendar",
                    ));
                }
                d
            }
        };
        let category = category_for(&mut v, &f, &a.headline, &a.category);
        if let (Some(due_date), Some(category)) = (due, category) {
            out.push(PlannedAction {
                action_id: carried.map_or_else(|| (s.new_id)(), |p| p.action_id.clone()),
                what: a.what.clone(),
                owner_kind: a.owner_kind.as_str().into(),
                owner: a.owner.clone(),
                owner_email: a.owner_email.clone(),
                due_date,
                category,
                headline: a.headline.clone(),
            });
        }
    }
    if v.is_empty() { Ok(out) } else { Err(v) }
}

/// May `caller` change an action owned by `owner` (a practitioner's id, or a family member's)?
/// Its practitioner owner, the lead, or a team manager.
pub fn may_update_action(
    caller: &super::Caller<'_>,
    lead: &super::Lead<'_>,
    owner_kind: &str,
    owner: &str,
) -> Result<(), Refusal> {
    let owns = owner_kind == OwnerKind::Practitioner.as_str() && owner == caller.id;
    if owns || caller.id == lead.practitioner || caller.team_manager {
        Ok(())
    } else {
        Err(Refusal::Forbidden(
            "only the action's owner, the case's lead practitioner or a team manager may update it"
                .into(),
        ))
    }
}

/// May `from` become `to`? A cancelled action stays cancelled; nothing becomes what it already is.
pub fn may_move(from: ActionStatus, to: ActionStatus) -> Result<(), Refusal> {
    if from == ActionStatus::Cancelled {
        return Err(Refusal::Conflict(
            "the action was cancelled: add a new one to the plan instead".into(),
        ));
    }
    if from == to {
        return Err(Refusal::Conflict(format!(
            "the action is already {}",
            to.as_str()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Caller, Lead};

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn action(due: Due) -> ActionInput {
        ActionInput {
            index: 0,
            action_id: None,
            what: "Attend the parenting course".into(),
            owner_kind: OwnerKind::Family,
            owner: "person-mother".into(),
            owner_email: String::new(),
            due,
            category: String::new(),
            headline: "health".into(),
        }
    }

    fn settle(
        actions: &[ActionInput],
        previous: &[PlannedAction],
    ) -> Result<Vec<PlannedAction>, Vec<Violation>> {
        // Working days: weekdays only, for the test.
        let add = |n: u32| {
            let mut day = d("2026-12-04"); // a Friday
            let mut left = n;
            while left > 0 {
                day = day.succ_opt()?;
                if !matches!(day.format("%a").to_string().as_str(), "Sat" | "Sun") {
                    left -= 1;
                }
            }
            Some(day)
        };
        settle_actions(
            actions,
            &Settle {
                today: d("2026-12-04"),
                add_working_days: &add,
                previous,
                new_id: &|| "new".to_string(),
            },
        )
    }

    fn fields(v: &[Violation]) -> Vec<String> {
        v.iter().map(|v| v.field.clone()).collect()
    }

    #[test]
    fn due_dates_are_settled_on_working_days_and_categories_follow_the_headline() {
        let a = settle(&[action(Due::InWorkingDays(2))], &[]).unwrap();
        assert_eq!(a[0].due_date, d("2026-12-08"), "Friday + 2 working days");
        assert_eq!(a[0].category, "health");
        assert_eq!(a[0].action_id, "new");
        let a = settle(&[action(Due::On(d("2026-12-24")))], &[]).unwrap();
        assert_eq!(a[0].due_date, d("2026-12-24"));
    }

    #[test]
    fn every_wrong_field_is_named() {
        let mut bad = action(Due::On(d("2026-12-01")));
        bad.what = String::new();
        bad.headline = "weather".into();
        let mut prac = action(Due::InWorkingDays(0));
        prac.owner_kind = OwnerKind::Practitioner;
        prac.owner_email = "not-an-address".into();
        prac.action_id = Some("missing".into());
        prac.index = 1;
        let v = settle(&[bad, prac], &[]).unwrap_err();
        assert_eq!(
            fields(&v),
            [
                "actions[0].what",
                "actions[0].due_date",
                "actions[0].headline",
                "actions[1].owner_email",
                "actions[1].action_id",
                "actions[1].due_in_working_days",
            ]
        );
        assert_eq!(fields(&settle(&[], &[]).unwrap_err()), ["actions"]);
        let mut fam = action(Due::InWorkingDays(3));
        fam.owner_email = "mum@example.org".into();
        assert_eq!(
            fields(&settle(&[fam], &[]).unwrap_err()),
            ["actions[0].owner_email"],
            "a family member's address is never taken for reminders"
        );
    }

    #[test]
    fn a_carried_action_keeps_its_id_and_may_keep_a_past_date() {
        let prev = PlannedAction {
            action_id: "a-1".into(),
            what: "x".into(),
            owner_kind: "family".into(),
            owner: "person-mother".into(),
            owner_email: String::new(),
            due_date: d("2026-11-30"),
            category: "health".into(),
            headline: "health".into(),
        };
        let mut carried = action(Due::On(d("2026-11-30")));
        carried.action_id = Some("a-1".into());
        let a = settle(&[carried.clone()], std::slice::from_ref(&prev)).unwrap();
        assert_eq!(a[0].action_id, "a-1");
        carried.due = Due::On(d("2026-12-02"));
        assert_eq!(
            fields(&settle(&[carried], &[prev]).unwrap_err()),
            ["actions[0].due_date"],
            "re-dating into the past is refused"
        );
    }

    #[test]
    fn outcomes_need_a_headline_and_words() {
        let ok = check_outcomes(&[Outcome {
            headline: "crime".into(),
            outcome: "No more police call-outs".into(),
            category: String::new(),
        }])
        .unwrap();
        assert_eq!(ok[0].category, "police");
        let v = check_outcomes(&[Outcome {
            headline: String::new(),
            outcome: String::new(),
            category: "nonsense".into(),
        }])
        .unwrap_err();
        assert_eq!(fields(&v), ["outcomes[0].outcome", "outcomes[0].headline"]);
        assert_eq!(fields(&check_outcomes(&[]).unwrap_err()), ["outcomes"]);
    }

    #[test]
    fn overdue_is_after_the_due_day_and_only_while_unfinished() {
        let due = d("2026-12-10");
        assert!(!overdue(ActionStatus::Open, due, d("2026-12-10")));
        assert!(overdue(ActionStatus::Open, due, d("2026-12-11")));
        assert!(overdue(ActionStatus::InProgress, due, d("2026-12-11")));
        assert!(!overdue(ActionStatus::Done, due, d("2026-12-11")));
        assert!(!overdue(ActionStatus::Cancelled, due, d("2026-12-11")));
    }

    #[test]
    fn who_may_update_an_action_and_how_it_may_move() {
        let lead = Lead {
            practitioner: "lead",
            organization: "org",
        };
        let who = |id| Caller {
            id,
            agency: Some("health"),
            team_manager: false,
        };
        assert!(may_update_action(&who("nurse"), &lead, "practitioner", "nurse").is_ok());
        assert!(may_update_action(&who("lead"), &lead, "family", "person-1").is_ok());
        assert!(matches!(
            may_update_action(&who("nurse"), &lead, "practitioner", "teacher"),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            may_update_action(&who("person-1"), &lead, "family", "person-1"),
            Err(Refusal::Forbidden(_))
        ));
        assert!(may_move(ActionStatus::Open, ActionStatus::Done).is_ok());
        assert!(may_move(ActionStatus::Done, ActionStatus::Open).is_ok());
        assert!(may_move(ActionStatus::Cancelled, ActionStatus::Open).is_err());
        assert!(may_move(ActionStatus::Open, ActionStatus::Open).is_err());
    }

    #[test]
    fn mailboxes() {
        assert!(is_email("nurse@nhs.example"));
        assert!(!is_email("nurse@nhs"));
        assert!(!is_email("@x.org"));
        assert!(!is_email("a b@x.org"));
        assert!(!is_email("a@b@x.org"));
    }
}
