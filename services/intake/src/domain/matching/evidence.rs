//! What a match decision is kept with (`match_decisions`): the decision's name, the held person
//! its score is against, the identifier of an exact match and the score with its fields. Kept
//! for every person of every referral, so a reviewer sees why — including, for a new person,
//! the nearest miss.
use super::{Identifier, MatchDecision, MatchScore, PersonMatch};

/// The evidence kept with one person's match decision.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DecisionEvidence<'a> {
    /// exact | attach | candidates | new ([`MatchDecision::name`]).
    pub decision: &'static str,
    /// The held person the score is against: the one attached to, the best candidate, or for a
    /// new person the nearest miss (none when nobody shared a blocking key).
    pub matched_person_id: Option<&'a str>,
    /// For an exact match: the identifier it was made on.
    pub identifier: Option<Identifier>,
    /// The score against that held person, with every field compared.
    pub score: Option<&'a MatchScore>,
}

impl MatchDecision {
    /// The decision's name as stored (`match_decisions.decision`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Exact { .. } => "exact",
            Self::Attach { .. } => "attach",
            Self::Candidates { .. } => "candidates",
            Self::New => "new",
        }
    }
}

impl PersonMatch {
    /// The evidence to keep with this person's decision.
    pub fn evidence(&self) -> DecisionEvidence<'_> {
        let d = &self.result.decision;
        let (matched, identifier, score) = match d {
            MatchDecision::Exact {
                person_id,
                on,
                score,
                ..
            } => (Some(person_id), Some(*on), Some(score)),
            MatchDecision::Attach {
                person_id, score, ..
            } => (Some(person_id), None, Some(score)),
            MatchDecision::Candidates { candidates } => match candidates.first() {
                Some(c) => (Some(&c.person_id), None, Some(&c.score)),
                None => (None, None, None),
            },
            // Nobody close enough: the nearest miss, if any, says why.
            MatchDecision::New => match &self.result.nearest {
                Some(c) => (Some(&c.person_id), None, Some(&c.score)),
                None => (None, None, None),
            },
        };
        DecisionEvidence {
            decision: d.name(),
            matched_person_id: matched.map(String::as_str),
            identifier,
            score,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::{
        Candidate, Field, FieldMatch, MatchKind, MatchResult, PersonDetails, ReferralRole,
    };
    use super::*;

    fn score(points: f64) -> MatchScore {
        MatchScore {
            score: points,
            fields: vec![FieldMatch {
                field: Field::FamilyName,
                kind: MatchKind::Exact,
                weight: points,
            }],
            nhs_conflict: false,
        }
    }

    fn candidate(id: &str, points: f64) -> Candidate {
        Candidate {
            person_id: id.into(),
            family_id: format!("f-{id}"),
            score: score(points),
        }
    }

    fn person(decision: MatchDecision, nearest: Option<Candidate>) -> PersonMatch {
        PersonMatch {
            role: ReferralRole::Child,
            index: 0,
            details: PersonDetails::default(),
            result: MatchResult {
                decision,
                candidates: Vec::new(),
                notes: Vec::new(),
                nearest,
            },
        }
    }

    #[test]
    fn an_exact_match_keeps_the_identifier_and_the_person() {
        let m = person(
            MatchDecision::Exact {
                person_id: "p1".into(),
                family_id: "f1".into(),
                on: Identifier::Upn,
                score: score(30.0),
            },
            None,
        );
        let e = m.evidence();
        assert_eq!(e.decision, "exact");
        assert_eq!(e.matched_person_id, Some("p1"));
        assert_eq!(e.identifier, Some(Identifier::Upn));
        assert_eq!(e.score.map(|s| s.score), Some(30.0));
    }

    #[test]
    fn an_attachment_keeps_its_score_and_no_identifier() {
        let m = person(
            MatchDecision::Attach {
                person_id: "p2".into(),
                family_id: "f2".into(),
                score: score(25.0),
            },
            None,
        );
        let e = m.evidence();
        assert_eq!(e.decision, "attach");
        assert_eq!(e.matched_person_id, Some("p2"));
        assert_eq!(e.identifier, None);
        assert_eq!(e.score, Some(&score(25.0)));
    }

    #[test]
    fn candidates_keep_the_best_one() {
        let m = person(
            MatchDecision::Candidates {
                candidates: vec![candidate("best", 20.0), candidate("next", 18.0)],
            },
            None,
        );
        let e = m.evidence();
        assert_eq!(e.decision, "candidates");
        assert_eq!(e.matched_person_id, Some("best"));
        assert_eq!(e.score.map(|s| s.score), Some(20.0));
        let none = person(MatchDecision::Candidates { candidates: vec![] }, None);
        let none = none.evidence();
        assert_eq!((none.matched_person_id, none.score), (None, None));
    }

    #[test]
    fn a_new_person_keeps_the_nearest_miss_when_there_was_one() {
        let near = person(MatchDecision::New, Some(candidate("near", 9.0)));
        let e = near.evidence();
        assert_eq!(e.decision, "new");
        assert_eq!(e.matched_person_id, Some("near"));
        assert_eq!(e.score.map(|s| s.score), Some(9.0));
        let alone = person(MatchDecision::New, None);
        let alone = alone.evidence();
        assert_eq!(alone.decision, "new");
        assert_eq!((alone.matched_person_id, alone.identifier), (None, None));
        assert_eq!(alone.score, None);
    }
}
