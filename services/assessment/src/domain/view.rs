//! What a reader is shown of one version of an assessment: each contribution whose information
//! category the family's consent lets the reader's agency see (an agency always sees what it
//! wrote), and within it each need whose headline's category is allowed. Everything else is
//! withheld, and the reader is told what was withheld and why — which contribution (its id and
//! author's agency) or how many of its needs — never the withheld content or its category.
use super::{Contribution, headline_category};
use std::collections::BTreeMap;

/// Consent's answer about one category for the reader's agency: allowed or not, with the
/// decision's id; `None` when consent could not be asked (withheld: fail closed).
pub type Answer = Option<(bool, String)>;

/// A stored contribution as a reader's view starts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    pub id: String,
    pub author_agency: String,
    pub body: Contribution,
}

/// Something left out of a reader's view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// The contribution it is (or is in).
    pub contribution_id: String,
    /// What was left out, in words ("the contribution", "2 of its needs").
    pub what: String,
    pub reason: String,
    /// Consent's decisions that refused it (none when consent could not be asked).
    pub decision_ids: Vec<String>,
}

/// The reader's view of a version.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct View {
    /// Shown contributions (needs not allowed removed), in the order given.
    pub shown: Vec<Section>,
    pub withheld: Vec<Withheld>,
}

/// The categories consent must be asked about for `reader_agency` to read `sections`.
pub fn categories_to_ask(sections: &[Section], reader_agency: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in sections {
        if s.author_agency == reader_agency {
            continue;
        }
        let mut push = |c: &str| {
            if !out.iter().any(|o| o == c) {
                out.push(c.to_string());
            }
        };
        push(&s.body.category);
        for n in &s.body.needs {
            if let Some(c) = headline_category(&n.headline) {
                push(c);
            }
        }
    }
    out
}

fn reason(answer: &Answer, reader_agency: &str) -> (String, Vec<String>) {
    match answer {
        Some((_, id)) => (
            format!(
                "the family's consent does not allow sharing this information with a {reader_agency} agency"
            ),
            vec![id.clone()],
        ),
        None => (
            "the family's consent could not be checked just now; ask again later".into(),
            Vec::new(),
        ),
    }
}

/// Applies consent's `answers` (by category) to `sections` for `reader_agency`. A category with
/// no answer is withheld.
pub fn apply(
    sections: Vec<Section>,
    reader_agency: &str,
    answers: &BTreeMap<String, Answer>,
) -> View {
    let allowed = |c: &str| matches!(answers.get(c), Some(Some((true, _))));
    let answer = |c: &str| answers.get(c).cloned().flatten();
    let mut view = View::default();
    for mut s in sections {
        if s.author_agency == reader_agency {
            view.shown.push(s);
            continue;
        }
        if !allowed(&s.body.category) {
            let (why, ids) = reason(&answer(&s.body.category), reader_agency);
            view.withheld.push(Withheld {
                contribution_id: s.id.clone(),
                what: format!("the contribution of a {} agency", s.author_agency),
                reason: why,
                decision_ids: ids,
            });
            continue;
        }
        let mut refused: Vec<String> = Vec::new();
        let (mut n_refused, mut n_unasked) = (0usize, 0usize);
        s.body.needs.retain(|n| {
            let c = headline_category(&n.headline).unwrap_or("social_care");
            if allowed(c) {
                return true;
            }
            match answer(c) {
                Some((_, id)) => {
                    n_refused += 1;
                    if !refused.contains(&id) {
                        refused.push(id);
                    }
                }
                None => n_unasked += 1,
            }
            false
        });
        let count = |n: usize| {
            if n == 1 {
                "1 of its needs".to_string()
            } else {
                format!("{n} of its needs")
            }
        };
        if n_refused > 0 {
            let (why, _) = reason(&Some((false, String::new())), reader_agency);
            view.withheld.push(Withheld {
                contribution_id: s.id.clone(),
                what: count(n_refused),
                reason: why,
                decision_ids: refused,
            });
        }
        if n_unasked > 0 {
            let (why, ids) = reason(&None, reader_agency);
            view.withheld.push(Withheld {
                contribution_id: s.id.clone(),
                what: count(n_unasked),
                reason: why,
                decision_ids: ids,
            });
        }
        view.shown.push(s);
    }
    view
}

/// One item of a plan or of a case's outcomes (an outcome, an action, a review, a score, the
/// closure), filed under an information category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub id: String,
    /// What it is, in words ("an action of the plan").
    pub what: String,
    pub category: String,
}

/// The distinct categories of `items`, to ask consent about.
pub fn item_categories(items: &[Item]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for i in items {
        if !out.contains(&i.category) {
            out.push(i.category.clone());
        }
    }
    out
}

/// Applies consent's `answers` to `items` for `reader_agency`: the ids shown, and what was
/// withheld and why. `own`: the reader's agency wrote them (it sees them all, unasked).
pub fn filter_items(
    items: &[Item],
    own: bool,
    reader_agency: &str,
    answers: &BTreeMap<String, Answer>,
) -> (std::collections::BTreeSet<String>, Vec<Withheld>) {
    let mut shown = std::collections::BTreeSet::new();
    let mut withheld = Vec::new();
    for i in items {
        let answer = answers.get(&i.category).cloned().flatten();
        if own || matches!(answer, Some((true, _))) {
            shown.insert(i.id.clone());
            continue;
        }
        let (why, ids) = reason(&answer, reader_agency);
        withheld.push(Withheld {
            contribution_id: i.id.clone(),
            what: i.what.clone(),
            reason: why,
            decision_ids: ids,
        });
    }
    (shown, withheld)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, category: &str) -> Item {
        Item {
            id: id.into(),
            what: "an action of the plan".into(),
            category: category.into(),
        }
    }

    #[test]
    fn items_are_shown_as_consent_allows_and_withheld_with_the_reason() {
        let items = [
            item("a", "education"),
            item("b", "mental_health"),
            item("c", "housing"),
        ];
        assert_eq!(
            item_categories(&items),
            ["education", "mental_health", "housing"]
        );
        let answers = BTreeMap::from([
            ("education".to_string(), Some((true, "d1".to_string()))),
            ("mental_health".to_string(), Some((false, "d2".to_string()))),
            ("housing".to_string(), None),
        ]);
        let (shown, withheld) = filter_items(&items, false, "police", &answers);
        assert_eq!(shown.into_iter().collect::<Vec<_>>(), ["a"]);
        assert_eq!(withheld.len(), 2);
        assert_eq!(withheld[0].contribution_id, "b");
        assert_eq!(withheld[0].decision_ids, ["d2"]);
        assert!(withheld[0].reason.contains("police"));
        assert!(
            withheld[1].reason.contains("could not be checked"),
            "unasked: fail closed"
        );
        let (shown, withheld) = filter_items(&items, true, "police", &BTreeMap::new());
        assert_eq!(shown.len(), 3, "the plan's own agency sees all of it");
        assert!(withheld.is_empty());
    }
}
