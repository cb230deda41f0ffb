//! The synthetic council both matching benches use: deterministic families of one or two adults
//! and one to four children sharing a Worcestershire postcode, and queries that mix exact NHS
//! numbers, near-duplicates and people who are not held. Each bench uses part of it.
#![allow(dead_code)]
use chrono::{Datelike, NaiveDate};
use eh_intake::domain::matching::{HeldPerson, PersonDetails};
use std::time::Duration;

/// SplitMix64: small, fast and the same on every platform.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9E37_79B9_7F4A_7C15)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, p: f64) -> bool {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64 <= p
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

/// Zipf-like picking (weight 1/rank) from a list sorted most common first.
pub struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, s: f64) -> Self {
        let mut acc = 0.0;
        let cumulative = (1..=n)
            .map(|k| {
                acc += 1.0 / (k as f64).powf(s);
                acc
            })
            .collect();
        Self { cumulative }
    }
    pub fn pick(&self, rng: &mut Rng) -> usize {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let x = (rng.next() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len() - 1)
    }
}

pub const SURNAMES: &[&str] = &[
    "Smith",
    "Jones",
    "Williams",
    "Taylor",
    "Brown",
    "Davies",
    "Evans",
    "Wilson",
    "Thomas",
    "Johnson",
    "Roberts",
    "Robinson",
    "Thompson",
    "Wright",
    "Walker",
    "White",
    "Edwards",
    "Hughes",
    "Green",
    "Hall",
    "Lewis",
    "Harris",
    "Clarke",
    "Patel",
    "Jackson",
    "Wood",
    "Turner",
    "Martin",
    "Cooper",
    "Hill",
    "Ward",
    "Morris",
    "Moore",
    "Clark",
    "Lee",
    "King",
    "Baker",
    "Harrison",
    "Morgan",
    "Allen",
    "James",
    "Scott",
    "Phillips",
    "Watson",
    "Davis",
    "Parker",
    "Price",
    "Bennett",
    "Young",
    "Griffiths",
    "Mitchell",
    "Kelly",
    "Cook",
    "Carter",
    "Richardson",
    "Bailey",
    "Collins",
    "Bell",
    "Shaw",
    "Murphy",
    "Miller",
    "Cox",
    "Richards",
    "Khan",
    "Marshall",
    "Anderson",
    "Simpson",
    "Ellis",
    "Adams",
    "Singh",
    "Begum",
    "Wilkinson",
    "Foster",
    "Chapman",
    "Powell",
    "Webb",
    "Rogers",
    "Gray",
    "Mason",
    "Ali",
    "Hunt",
    "Hussain",
    "Campbell",
    "Matthews",
    "Owen",
    "Palmer",
    "Holmes",
    "Mills",
    "Barnes",
    "Knight",
    "Lloyd",
    "Butler",
    "Russell",
    "Barker",
    "Fisher",
    "Stevens",
    "Jenkins",
    "Murray",
    "Dixon",
    "Harvey",
    "O'Brien",
    "Nowak",
    "Kowalski",
    "Brontë",
    "Müller",
];
pub const PREFIXES: &[&str] = &[
    "Ash", "Brad", "Craw", "Dun", "El", "Fair", "Gold", "Hal", "Ing", "Kirk", "Lang", "Mar", "Nor",
    "Old", "Pen", "Rad", "Shel", "Thorn", "Up", "Whit", "Wood", "Black", "Brook", "Cald", "Hart",
    "Stan", "Wes", "Bur", "Chad", "Hol",
];
pub const SUFFIXES: &[&str] = &[
    "ley", "ton", "worth", "ford", "field", "by", "ham", "wood", "well", "shaw", "bury", "den",
    "more", "croft", "land", "wick", "stone", "ridge", "combe", "hurst",
];
pub const CONSONANTS: &[&str] = &[
    "b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "ch", "sh", "th",
];
pub const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ou"];
pub const GIRLS: &[&str] = &[
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Ivy",
    "Lily",
    "Isabella",
    "Rosie",
    "Sophia",
    "Grace",
    "Freya",
    "Willow",
    "Florence",
    "Emily",
    "Ella",
    "Poppy",
    "Evie",
    "Elsie",
    "Charlotte",
    "Evelyn",
    "Sienna",
    "Sofia",
    "Daisy",
    "Phoebe",
    "Sophie",
    "Alice",
    "Harper",
    "Matilda",
    "Ruby",
    "Emilia",
    "Maya",
    "Millie",
    "Isabelle",
    "Eva",
    "Luna",
    "Jessica",
    "Chloe",
    "Zoë",
    "Sarah",
    "Emma",
    "Rebecca",
    "Katherine",
    "Elizabeth",
    "Samantha",
    "Jennifer",
    "Nicola",
    "Victoria",
    "Margaret",
    "Susan",
    "Joanne",
    "Claire",
    "Laura",
    "Gemma",
    "Hannah",
];
pub const BOYS: &[&str] = &[
    "Muhammad",
    "Noah",
    "Oliver",
    "George",
    "Leo",
    "Arthur",
    "Oscar",
    "Theodore",
    "Freddie",
    "Theo",
    "Harry",
    "Archie",
    "Henry",
    "Jack",
    "Alfie",
    "Charlie",
    "Finley",
    "Tommy",
    "Jacob",
    "Thomas",
    "William",
    "James",
    "Lucas",
    "Isaac",
    "Joshua",
    "Edward",
    "Alexander",
    "Max",
    "Samuel",
    "Reuben",
    "Benjamin",
    "Daniel",
    "Joseph",
    "Michael",
    "Christopher",
    "Robert",
    "David",
    "Richard",
    "Matthew",
    "Andrew",
    "John",
    "Stephen",
    "Paul",
    "Mark",
    "Anthony",
    "Peter",
    "Nicholas",
    "Jonathan",
    "Lee",
    "Craig",
];
/// Nicknames the query generator may use (every one is in the matcher's table).
pub const NICKNAMES: &[(&str, &str)] = &[
    ("William", "Bill"),
    ("Robert", "Bob"),
    ("Elizabeth", "Liz"),
    ("Katherine", "Kate"),
    ("James", "Jim"),
    ("Thomas", "Tom"),
    ("Samuel", "Sam"),
    ("Samantha", "Sam"),
    ("Alexander", "Alex"),
    ("Michael", "Mike"),
    ("Daniel", "Danny"),
    ("John", "Jack"),
    ("Christopher", "Chris"),
    ("Oliver", "Ollie"),
    ("Joseph", "Joe"),
    ("Matthew", "Matt"),
    ("Benjamin", "Ben"),
    ("Rebecca", "Becky"),
    ("Jennifer", "Jenny"),
    ("Victoria", "Vicky"),
    ("Nicola", "Nikki"),
    ("Margaret", "Maggie"),
    ("Edward", "Ed"),
    ("Richard", "Rich"),
    ("Anthony", "Tony"),
    ("David", "Dave"),
    ("Andrew", "Andy"),
    ("Stephen", "Steve"),
    ("Isabella", "Izzy"),
    ("Charlotte", "Lottie"),
    ("Henry", "Harry"),
    ("Theodore", "Theo"),
];
pub const DISTRICTS: &[&str] = &[
    "WR1", "WR2", "WR3", "WR4", "WR5", "WR6", "WR7", "WR8", "WR9", "WR10", "WR11", "WR12", "WR13",
    "WR14", "WR15", "B60", "B61", "B96", "B97", "B98", "DY10", "DY11", "DY12", "DY13", "DY14",
];
pub const UNIT_LETTERS: &[u8] = b"ABDEFGHJLNPQRSTUWXYZ";

pub struct World {
    surnames: Zipf,
    girls: Zipf,
    boys: Zipf,
    today: NaiveDate,
}

impl World {
    pub fn new() -> Self {
        Self {
            surnames: Zipf::new(SURNAMES.len(), 1.0),
            girls: Zipf::new(GIRLS.len(), 0.9),
            boys: Zipf::new(BOYS.len(), 0.9),
            today: NaiveDate::from_ymd_opt(2026, 11, 20).unwrap_or_default(),
        }
    }

    fn surname(&self, rng: &mut Rng) -> String {
        let x = rng.next() % 100;
        let base = if x < 25 {
            SURNAMES[self.surnames.pick(rng)].to_string()
        } else if x < 80 {
            format!("{}{}", rng.pick(PREFIXES), rng.pick(SUFFIXES))
        } else {
            let mut s = String::new();
            for _ in 0..2 + rng.below(2) {
                s.push_str(rng.pick(CONSONANTS));
                s.push_str(rng.pick(VOWELS));
            }
            s.push_str(rng.pick(CONSONANTS));
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect())
                .unwrap_or_default()
        };
        if rng.chance(0.03) {
            format!("{base}-{}", SURNAMES[self.surnames.pick(rng)])
        } else {
            base
        }
    }

    fn given(&self, rng: &mut Rng, girl: bool) -> String {
        if girl {
            GIRLS[self.girls.pick(rng)].to_string()
        } else {
            BOYS[self.boys.pick(rng)].to_string()
        }
    }

    fn postcode(&self, rng: &mut Rng) -> String {
        format!(
            "{} {}{}{}",
            rng.pick(DISTRICTS),
            rng.below(10),
            UNIT_LETTERS[rng.below(UNIT_LETTERS.len())] as char,
            UNIT_LETTERS[rng.below(UNIT_LETTERS.len())] as char
        )
    }

    fn date_between(&self, rng: &mut Rng, from: NaiveDate, to: NaiveDate) -> NaiveDate {
        let days = (to - from).num_days().max(1);
        from + chrono::Duration::days((rng.next() % days as u64) as i64)
    }

    /// Family `f`: the same people every time it is asked for.
    pub fn family(&self, f: u64) -> Vec<HeldPerson> {
        let mut rng = Rng::new(f.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let family_id = format!("f{f:08}");
        let surname = self.surname(&mut rng);
        let postcode = self.postcode(&mut rng);
        let adults = if rng.chance(0.3) { 1 } else { 2 };
        let children = match rng.below(100) {
            0..35 => 1,
            35..70 => 2,
            70..90 => 3,
            _ => 4,
        };
        let mut people = Vec::with_capacity(adults + children);
        let parent_from = self.today - chrono::Duration::days(365 * 62);
        let parent_to = self.today - chrono::Duration::days(365 * 20);
        let mother_dob = self.date_between(&mut rng, parent_from, parent_to);
        for k in 0..adults + children {
            let child = k >= adults;
            let girl = if child { rng.chance(0.5) } else { k == 0 };
            // A second adult keeps their own name 30% of the time; a child 12% (step-families).
            let own_name = if child {
                rng.chance(0.12)
            } else {
                k == 1 && rng.chance(0.3)
            };
            let family_name = if own_name {
                self.surname(&mut rng)
            } else {
                surname.clone()
            };
            let dob = if child {
                let from = (mother_dob + chrono::Duration::days(365 * 17))
                    .max(self.today - chrono::Duration::days(365 * 18 + 4));
                self.date_between(&mut rng, from, self.today)
            } else if k == 0 {
                mother_dob
            } else {
                mother_dob + chrono::Duration::days(rng.below(365 * 10) as i64 - 365 * 3)
            };
            let serial = f * 8 + k as u64;
            let nhs = rng
                .chance(if child { 0.7 } else { 0.4 })
                .then(|| nhs_number(serial))
                .flatten();
            let upn = (child && (self.today - dob).num_days() > 365 * 4 && rng.chance(0.6))
                .then(|| upn(serial));
            people.push(HeldPerson {
                person_id: format!("p{f:08}-{k}"),
                family_id: family_id.clone(),
                details: PersonDetails {
                    given_name: self.given(&mut rng, girl),
                    family_name,
                    date_of_birth: Some(dob),
                    postcode: Some(postcode.clone()),
                    nhs_number: nhs,
                    upn,
                },
            });
        }
        people
    }
}

/// A valid NHS number unique to `serial` (None when its check digit would be 10).
pub fn nhs_number(serial: u64) -> Option<String> {
    let first9 = format!("{:09}", 100_000_000 + serial % 800_000_000);
    let sum: u32 = first9
        .bytes()
        .zip((2..=10u32).rev())
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = match 11 - sum % 11 {
        11 => 0,
        10 => return None,
        c => c,
    };
    Some(format!("{first9}{check}"))
}

/// A valid UPN from Worcestershire (LA 885) unique to `serial`.
pub fn upn(serial: u64) -> String {
    const LETTERS: &[u8] = b"ABCDEFGHJKLMNPQRTUVWXYZ";
    let body = format!("885{:08}0", serial % 100_000_000);
    let sum: u32 = body
        .bytes()
        .zip(2u32..)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{}{body}", LETTERS[(sum % 23) as usize] as char)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum QueryKind {
    ExactNhs,
    NearDuplicate,
    NotHeld,
}

pub struct Query {
    pub kind: QueryKind,
    pub truth: Option<String>,
    pub held: Option<PersonDetails>,
    pub details: PersonDetails,
    /// The family the query person is from (held or not).
    pub family: u64,
}

pub fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 4 {
        return s.to_string();
    }
    let i = 1 + rng.below(c.len() - 2);
    match rng.below(3) {
        0 => c.swap(i, i + 1),
        1 => {
            c.remove(i);
        }
        _ => c[i] = ['a', 'e', 'i', 'o', 'y'][rng.below(5)],
    }
    c.into_iter().collect()
}

pub fn accent(s: &str) -> String {
    s.replacen('e', "é", 1).replacen('o', "ö", 1)
}

pub fn near_duplicate(world: &World, rng: &mut Rng, held: &PersonDetails) -> PersonDetails {
    let mut q = held.clone();
    q.nhs_number = None;
    q.upn = None;
    let changes = 1 + rng.below(2);
    for _ in 0..changes {
        match rng.below(9) {
            0 => {
                if let Some((_, nick)) = NICKNAMES.iter().find(|(full, _)| *full == q.given_name) {
                    q.given_name = (*nick).to_string();
                }
            }
            1 => q.family_name = typo(rng, &q.family_name),
            2 => q.given_name = typo(rng, &q.given_name),
            3 => {
                if let Some(d) = q.date_of_birth
                    && d.day() <= 12
                {
                    q.date_of_birth = NaiveDate::from_ymd_opt(d.year(), d.day(), d.month());
                }
            }
            4 => {
                q.date_of_birth = q
                    .date_of_birth
                    .and_then(|d| NaiveDate::from_ymd_opt(d.year() + 1, d.month(), d.day()));
            }
            5 => {
                q.family_name = accent(&q.family_name);
                q.given_name = accent(&q.given_name).to_uppercase();
            }
            6 => q.postcode = Some(world.postcode(rng)),
            7 => q.postcode = None,
            _ => q.family_name = q.family_name.replace('-', " "),
        }
    }
    q
}

pub fn queries(world: &World, families: u64, seed: u64, count: usize) -> Vec<Query> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(count);
    let mut fresh = families + 1_000_000_000;
    while out.len() < count {
        let roll = rng.below(100);
        if roll < 70 {
            let family = rng.next() % families.max(1);
            let people = world.family(family);
            let p = &people[rng.below(people.len())];
            if roll < 25 && p.details.nhs_number.is_some() {
                let mut d = p.details.clone();
                d.given_name = typo(&mut rng, &d.given_name);
                out.push(Query {
                    kind: QueryKind::ExactNhs,
                    truth: Some(p.person_id.clone()),
                    held: Some(p.details.clone()),
                    details: d,
                    family,
                });
            } else {
                out.push(Query {
                    kind: QueryKind::NearDuplicate,
                    truth: Some(p.person_id.clone()),
                    held: Some(p.details.clone()),
                    details: near_duplicate(world, &mut rng, &p.details),
                    family,
                });
            }
        } else {
            fresh += 1;
            let people = world.family(fresh);
            let mut d = people[rng.below(people.len())].details.clone();
            d.upn = None;
            // A valid NHS number nobody holds, half the time.
            d.nhs_number = if rng.chance(0.5) {
                nhs_number(900_000_000 + rng.next() % 50_000_000)
            } else {
                None
            };
            out.push(Query {
                kind: QueryKind::NotHeld,
                truth: None,
                held: None,
                details: d,
                family: fresh,
            });
        }
    }
    out
}

pub fn rss_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

pub fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}
