//! A practitioner's answer to a match candidate, decided: which status it takes, what a
//! confirmation merges, and which of the referrals it moves become re-referrals. The reads
//! and writes around these decisions are the store's (`store::people`, `store::matches`); the
//! order they run in is the handler's (`handlers::candidates`).
//!
//! Confirming merges the new person into the held one. When the referral had started a family
//! of its own (nobody on it was known), that family joins the held person's, and its referrals
//! are judged again as referrals of a known family. A referral already filed under a held
//! family stays there: two held families are not merged on one person's say-so.
use super::previous_referral_within_window;
use chrono::{DateTime, Utc};

/// Where a match candidate stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CandidateStatus {
    Pending,
    Confirmed,
    Rejected,
}

impl CandidateStatus {
    /// As stored in `match_candidates.status` and shown over gRPC.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "confirmed" => Some(Self::Confirmed),
            "rejected" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A practitioner's answer to a match candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The same person: merge the new one into the held one.
    Confirm,
    /// Different people: keep them apart.
    Reject,
}

impl Resolution {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "confirm" => Some(Self::Confirm),
            "reject" => Some(Self::Reject),
            _ => None,
        }
    }
}

/// The status a candidate now `current` takes on `resolution`; a candidate decided already is
/// not decided again (`Err` with the status it has).
pub fn resolved_status(
    current: CandidateStatus,
    resolution: Resolution,
) -> Result<CandidateStatus, CandidateStatus> {
    match (current, resolution) {
        (CandidateStatus::Pending, Resolution::Confirm) => Ok(CandidateStatus::Confirmed),
        (CandidateStatus::Pending, Resolution::Reject) => Ok(CandidateStatus::Rejected),
        (decided, _) => Err(decided),
    }
}

/// Where the people of a confirmed candidate stand now (merges may have happened since the
/// candidate was made, so each is followed to the record it lives on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeInput<'a> {
    /// The candidate's new person, as recorded on the candidate.
    pub new_person: &'a str,
    /// The record the new person lives on now (itself unless merged since).
    pub live_new_person: &'a str,
    /// The record the held person lives on now, and its family.
    pub held_person: &'a str,
    pub held_family: &'a str,
}

/// The referral the candidate came from, as filed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReferralFiling<'a> {
    pub family_id: &'a str,
    /// Someone on it was matched to a held person when it was taken.
    pub known_family: bool,
}

/// What confirming a candidate changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergePlan {
    /// Marked `merged_into` the held person (kept, so ids other services hold still resolve);
    /// its links and candidates move to the held person.
    pub new_person: String,
    pub held_person: String,
    /// The referral's own new family, moved into the held family.
    pub family: Option<FamilyMove>,
}

/// A family started by a referral, joining a held family: its people and referrals move there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FamilyMove {
    pub from: String,
    pub to: String,
}

/// Whether there is nothing to merge: the new person lives on the held person's record already
/// (merged by another route).
pub fn is_merged_already(people: &MergeInput<'_>) -> bool {
    people.live_new_person == people.held_person
}

/// What confirming the candidate merges (call once [`is_merged_already`] is false).
pub fn plan_merge(people: &MergeInput<'_>, referral: &ReferralFiling<'_>) -> MergePlan {
    let family =
        (!referral.known_family && referral.family_id != people.held_family).then(|| FamilyMove {
            from: referral.family_id.to_string(),
            to: people.held_family.to_string(),
        });
    MergePlan {
        new_person: people.new_person.to_string(),
        held_person: people.held_person.to_string(),
        family,
    }
}

impl MergePlan {
    /// Why the new person's other pending candidates are rejected.
    pub fn superseded_reason(&self, candidate_id: &str) -> String {
        format!(
            "superseded: {} was merged into {} (candidate {candidate_id})",
            self.new_person, self.held_person
        )
    }
}

/// For each referral `moved` into a held family, the referral that now makes it a re-referral
/// (the most recent other referral of the family in the window before it), or `None`. `history`
/// is every referral of the held family after the move, moved ones included, as (id, received
/// at); a moved referral missing from it is left out.
pub fn re_referrals_after_move(
    moved: &[String],
    history: &[(String, DateTime<Utc>)],
) -> Vec<(String, Option<String>)> {
    moved
        .iter()
        .filter_map(|id| {
            let at = history.iter().find(|(r, _)| r == id).map(|(_, t)| *t)?;
            let others: Vec<_> = history.iter().filter(|(r, _)| r != id).cloned().collect();
            let previous = previous_referral_within_window(&others, at).map(str::to_string);
            Some((id.clone(), previous))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn statuses_and_resolutions_read_back_what_they_write() {
        for s in [
            CandidateStatus::Pending,
            CandidateStatus::Confirmed,
            CandidateStatus::Rejected,
        ] {
            assert_eq!(CandidateStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(CandidateStatus::parse("Pending"), None);
        assert_eq!(Resolution::parse("confirm"), Some(Resolution::Confirm));
        assert_eq!(Resolution::parse("reject"), Some(Resolution::Reject));
        assert_eq!(Resolution::parse("merge"), None);
    }

    #[test]
    fn only_a_pending_candidate_is_resolved() {
        use CandidateStatus::*;
        assert_eq!(resolved_status(Pending, Resolution::Confirm), Ok(Confirmed));
        assert_eq!(resolved_status(Pending, Resolution::Reject), Ok(Rejected));
        for decided in [Confirmed, Rejected] {
            for r in [Resolution::Confirm, Resolution::Reject] {
                assert_eq!(resolved_status(decided, r), Err(decided));
            }
        }
    }

    fn input<'a>(new: &'a str, live_new: &'a str) -> MergeInput<'a> {
        MergeInput {
            new_person: new,
            live_new_person: live_new,
            held_person: "held",
            held_family: "held-family",
        }
    }

    #[test]
    fn a_person_merged_already_by_another_route_is_left_alone() {
        assert!(is_merged_already(&input("new", "held")));
        assert!(!is_merged_already(&input("new", "new")));
        // Merged elsewhere since: still merged into the held person from the recorded id.
        assert!(!is_merged_already(&input("new", "other")));
    }

    #[test]
    fn a_referral_that_started_its_own_family_moves_into_the_held_one() {
        let plan = plan_merge(
            &input("new", "new"),
            &ReferralFiling {
                family_id: "own-family",
                known_family: false,
            },
        );
        assert_eq!(plan.new_person, "new");
        assert_eq!(plan.held_person, "held");
        assert_eq!(
            plan.family,
            Some(FamilyMove {
                from: "own-family".into(),
                to: "held-family".into()
            })
        );
    }

    #[test]
    fn two_held_families_are_not_merged_on_one_persons_say_so() {
        let plan = plan_merge(
            &input("new", "new"),
            &ReferralFiling {
                family_id: "another-held-family",
                known_family: true,
            },
        );
        assert_eq!(plan.family, None);
        assert_eq!(plan.held_person, "held");
    }

    #[test]
    fn a_referral_filed_under_the_held_family_already_moves_nothing() {
        let plan = plan_merge(
            &input("new", "new"),
            &ReferralFiling {
                family_id: "held-family",
                known_family: false,
            },
        );
        assert_eq!(plan.family, None);
    }

    #[test]
    fn the_superseded_reason_names_both_people_and_the_candidate() {
        let plan = plan_merge(
            &input("new", "new"),
            &ReferralFiling {
                family_id: "held-family",
                known_family: true,
            },
        );
        assert_eq!(
            plan.superseded_reason("c1"),
            "superseded: new was merged into held (candidate c1)"
        );
    }

    fn at(y: i32, m: u32, d: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, 9, 0, 0).unwrap()
    }

    #[test]
    fn moved_referrals_are_re_referrals_only_of_a_referral_in_the_window_before_them() {
        let history = vec![
            ("old".to_string(), at(2024, 1, 10)),
            ("recent".to_string(), at(2025, 9, 1)),
            ("moved-a".to_string(), at(2026, 3, 2)),
            ("moved-b".to_string(), at(2028, 1, 1)),
        ];
        let moved = vec![
            "moved-a".to_string(),
            "moved-b".to_string(),
            "gone".to_string(),
        ];
        assert_eq!(
            re_referrals_after_move(&moved, &history),
            vec![
                // The most recent in the 12 months before it, not the older one.
                ("moved-a".to_string(), Some("recent".to_string())),
                // Nearly two years after anything else: not a re-referral.
                ("moved-b".to_string(), None),
                // "gone" is not in the family's history: left out.
            ]
        );
    }

    #[test]
    fn two_moved_referrals_make_each_other_re_referrals_in_order() {
        let history = vec![
            ("first".to_string(), at(2026, 1, 5)),
            ("second".to_string(), at(2026, 2, 5)),
        ];
        let moved = vec!["first".to_string(), "second".to_string()];
        assert_eq!(
            re_referrals_after_move(&moved, &history),
            vec![
                ("first".to_string(), None),
                ("second".to_string(), Some("first".to_string()))
            ]
        );
    }
}
