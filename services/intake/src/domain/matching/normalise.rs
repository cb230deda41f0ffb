//! Names, postcodes and dates as they are compared: case and accents folded, hyphens,
//! apostrophes and spaces made insignificant, nicknames mapped to the names they stand for.
use std::collections::HashMap;
use std::sync::LazyLock;

/// The ASCII spelling of a Latin-1 or Latin Extended-A letter (already lower-cased), or `None`
/// for a character outside those blocks.
fn fold_latin(c: char) -> Option<&'static str> {
    Some(match c {
        'à'..='å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ð' | 'ď' | 'đ' => "d",
        'è'..='ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì'..='ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' | 'ĸ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' | 'ŋ' => "n",
        'ò'..='ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ß' => "ss",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù'..='ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

/// A name as compared: lower case ASCII where the letter has an ASCII base, accents and
/// combining marks dropped, apostrophes and full stops removed (`O'Brien` = `OBrien`), and any
/// run of hyphens, spaces or other separators made a single space between parts. Letters of
/// other scripts are kept (lower-cased), so names in them still compare exactly.
pub fn normalise_name(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut pending_space = false;
    for c in raw.chars().flat_map(char::to_lowercase) {
        match c {
            'a'..='z' | '0'..='9' => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
            '\'' | '\u{2019}' | '\u{2018}' | '`' | '.' => {}
            // Combining diacritical marks: `Zoe\u{308}` is `Zoë` decomposed.
            '\u{0300}'..='\u{036f}' => {}
            c if c.is_alphabetic() => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                match fold_latin(c) {
                    Some(s) => out.push_str(s),
                    None => out.push(c),
                }
            }
            _ => pending_space = true,
        }
    }
    out
}

/// The name with its part separators removed: `smith jones` → `smithjones`.
pub fn joined(name: &str) -> String {
    name.chars().filter(|c| *c != ' ').collect()
}

/// Groups of given names that stand for one another. A name may be in more than one group
/// (`sam` is short for Samuel and for Samantha); two given names are nickname-equivalent when
/// they share a group.
const NICKNAME_GROUPS: &[&[&str]] = &[
    &[
        "william", "bill", "billy", "will", "willie", "liam", "wills",
    ],
    &["robert", "bob", "bobby", "rob", "robbie", "bert", "robin"],
    &[
        "elizabeth",
        "liz",
        "lizzie",
        "lizzy",
        "beth",
        "betty",
        "eliza",
        "elsie",
        "libby",
        "bess",
        "bessie",
        "lisa",
    ],
    &[
        "katherine",
        "catherine",
        "kathryn",
        "katharine",
        "cathryn",
        "kate",
        "katie",
        "katy",
        "kat",
        "cath",
        "cathy",
        "kathy",
        "kay",
        "kitty",
    ],
    &["james", "jim", "jimmy", "jamie", "jimmie"],
    &["thomas", "tom", "tommy", "thom"],
    &["samuel", "sam", "sammy"],
    &["samantha", "sam", "sammy", "sammie"],
    &[
        "alexander",
        "alex",
        "alec",
        "alexi",
        "sandy",
        "xander",
        "lex",
    ],
    &[
        "alexandra",
        "alex",
        "alexa",
        "lexi",
        "lexie",
        "sandra",
        "sandy",
    ],
    &[
        "michael", "mike", "mikey", "mick", "micky", "mickey", "mich",
    ],
    &["daniel", "dan", "danny", "dani"],
    &["danielle", "dani", "ellie"],
    &["john", "jack", "jon", "johnny", "jonny", "johnnie", "jock"],
    &["jonathan", "jon", "jonny", "jonty", "nathan"],
    &["christopher", "chris", "kit", "topher", "christy"],
    &[
        "christine",
        "chris",
        "christina",
        "chrissie",
        "chrissy",
        "tina",
        "kirsty",
    ],
    &["richard", "rich", "richie", "rick", "ricky", "dick"],
    &["edward", "ed", "eddie", "eddy", "ted", "teddy", "ned"],
    &["anthony", "tony", "ant", "antony"],
    &["joseph", "joe", "joey", "jo"],
    &["josephine", "jo", "josie", "jose"],
    &["joanne", "jo", "joanna", "jo-anne", "jojo"],
    &[
        "margaret", "maggie", "meg", "peggy", "marge", "margo", "greta", "madge",
    ],
    &["rebecca", "becky", "becca", "bex"],
    &["jennifer", "jen", "jenny", "jenni"],
    &["victoria", "vicky", "vicki", "tori", "vic"],
    &["nicholas", "nick", "nicky", "nico"],
    &["nicola", "nicky", "nikki", "nic", "nicole"],
    &["benjamin", "ben", "benny", "benji"],
    &["matthew", "matt", "matty"],
    &["andrew", "andy", "drew"],
    &["david", "dave", "davey", "davie"],
    &["stephen", "steven", "steve", "stevie"],
    &["peter", "pete"],
    &["charles", "charlie", "chas", "chuck"],
    &["charlotte", "charlie", "lottie", "lotte"],
    &["henry", "harry", "hal", "hank"],
    &["frederick", "fred", "freddie", "freddy", "alfie"],
    &["alfred", "alf", "alfie", "fred"],
    &["patrick", "pat", "paddy"],
    &["patricia", "pat", "patty", "tricia", "trish"],
    &["susan", "sue", "susie", "suzy"],
    &["deborah", "debbie", "deb", "debs"],
    &["jacqueline", "jackie", "jacqui"],
    &["abigail", "abbie", "abby", "gail"],
    &["oliver", "ollie", "olly"],
    &["olivia", "liv", "livvy", "ollie"],
    &["isabella", "isabel", "isabelle", "izzy", "bella", "issy"],
    &["amelia", "millie", "amy", "mia"],
    &["emily", "em", "emmy", "millie"],
    &["emma", "em", "emmy"],
    &["eleanor", "ellie", "nell", "nellie", "elle", "ella"],
    &["gabriel", "gabe"],
    &["gabriella", "gabby", "gabi", "ella"],
    &["zachary", "zac", "zack", "zak"],
    &["joshua", "josh"],
    &["nathaniel", "nat", "nate", "nathan"],
    &["anne", "ann", "anna", "annie", "hannah", "nancy"],
    &["mary", "molly", "polly", "mae"],
    &["sarah", "sara", "sally", "sadie"],
    &["theodore", "theo", "ted", "teddy"],
    &["archibald", "archie", "arch"],
    &["leonard", "leo", "len", "lenny"],
    &["kenneth", "ken", "kenny"],
    &["ronald", "ron", "ronnie"],
    &["donald", "don", "donny"],
    &["gerald", "gerry", "jerry"],
    &["terence", "terry"],
    &["timothy", "tim", "timmy"],
    &["philip", "phillip", "phil", "pip"],
    &["lawrence", "laurence", "larry", "laurie"],
    &["raymond", "ray"],
    &["gregory", "greg"],
    &["kimberley", "kimberly", "kim"],
    &["natalie", "nat", "tally"],
    &["natasha", "tasha", "tash"],
    &["stephanie", "steph", "stef"],
    &["penelope", "penny", "pen"],
    &["dorothy", "dot", "dottie", "dolly"],
    &["frances", "fran", "frankie", "fanny"],
    &["francis", "frank", "frankie"],
    &["louise", "lou", "louisa", "lulu"],
    &["louis", "lewis", "lou"],
    &["gemma", "jemma"],
    &["aaron", "aron"],
    &[
        "mohammed", "muhammad", "mohammad", "mohamed", "muhammed", "mo",
    ],
];

/// Each name to the groups it belongs to, sorted and deduplicated.
static NICKNAMES: LazyLock<HashMap<String, Vec<u16>>> = LazyLock::new(|| {
    let mut map: HashMap<String, Vec<u16>> = HashMap::new();
    for (i, group) in NICKNAME_GROUPS.iter().enumerate() {
        let id = u16::try_from(i).unwrap_or(u16::MAX);
        for name in *group {
            let groups = map.entry(joined(&normalise_name(name))).or_default();
            if !groups.contains(&id) {
                groups.push(id);
            }
        }
    }
    map.values_mut().for_each(|g| g.sort_unstable());
    map
});

/// The nickname groups of a (normalised, single-part) given name; empty when it is in none.
pub fn nickname_groups(part: &str) -> &'static [u16] {
    NICKNAMES.get(part).map(Vec::as_slice).unwrap_or(&[])
}

/// True when two given names stand for one another (`bill` ~ `william`, `bill` ~ `billy`).
pub fn nickname_equivalent(a: &str, b: &str) -> bool {
    let (ga, gb) = (nickname_groups(a), nickname_groups(b));
    ga.iter().any(|g| gb.contains(g))
}

/// American Soundex of a normalised name, encoded in a `u16` (letter × 1000 + three digits);
/// `None` when the name has no ASCII letter. Separators are ignored.
pub fn soundex(name: &str) -> Option<u16> {
    fn code(c: u8) -> u8 {
        match c {
            b'b' | b'f' | b'p' | b'v' => 1,
            b'c' | b'g' | b'j' | b'k' | b'q' | b's' | b'x' | b'z' => 2,
            b'd' | b't' => 3,
            b'l' => 4,
            b'm' | b'n' => 5,
            b'r' => 6,
            _ => 0,
        }
    }
    let mut letters = name.bytes().filter(u8::is_ascii_lowercase);
    let first = letters.next()?;
    let mut digits = [0u8; 3];
    let mut n = 0;
    let mut last = code(first);
    for c in letters {
        if n == 3 {
            break;
        }
        let d = code(c);
        match c {
            // H and W do not separate two letters with the same code.
            b'h' | b'w' => {}
            _ if d == 0 => last = 0,
            _ => {
                if d != last {
                    digits[n] = d;
                    n += 1;
                }
                last = d;
            }
        }
    }
    let digits = u16::from(digits[0]) * 100 + u16::from(digits[1]) * 10 + u16::from(digits[2]);
    Some(u16::from(first - b'a') * 1000 + digits)
}

/// A UK postcode in canonical form: upper case, no spaces (`wr1 2ab` → `WR12AB`). `None` unless
/// it has the shape of a postcode (outward code of 2-4 characters starting with a letter, then
/// an inward code of a digit and two letters).
pub fn normalise_postcode(raw: &str) -> Option<String> {
    let s: String = raw
        .chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let b = s.as_bytes();
    let ok = (5..=7).contains(&b.len())
        && b.iter().all(u8::is_ascii_alphanumeric)
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 3].is_ascii_digit()
        && b[b.len() - 2..].iter().all(u8::is_ascii_alphabetic)
        && b[..b.len() - 3].iter().any(u8::is_ascii_digit);
    ok.then_some(s)
}

/// The outward code (district) of a canonical postcode: `WR12AB` → `WR1`.
pub fn outward_code(canonical: &str) -> &str {
    canonical
        .get(..canonical.len().saturating_sub(3))
        .unwrap_or("")
}

/// The postcode area (leading letters) of an outward code: `WR1` → `WR`, `B60` → `B`.
pub fn postcode_area(outward: &str) -> &str {
    let end = outward
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(outward.len());
    &outward[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_case_fold() {
        assert_eq!(normalise_name("Zoë"), "zoe");
        assert_eq!(normalise_name("ZOE"), "zoe");
        assert_eq!(normalise_name("Zoe\u{308}"), "zoe", "decomposed diaeresis");
        assert_eq!(normalise_name("Siobhán"), "siobhan");
        assert_eq!(normalise_name("Łukasz Wiśniewski"), "lukasz wisniewski");
        assert_eq!(normalise_name("Ægir Straße"), "aegir strasse");
        assert_eq!(normalise_name("Đorđe"), "dorde");
    }

    #[test]
    fn hyphens_apostrophes_and_spaces_fold() {
        assert_eq!(normalise_name("Smith-Jones"), "smith jones");
        assert_eq!(normalise_name("  Smith   Jones "), "smith jones");
        assert_eq!(normalise_name("Smith - Jones"), "smith jones");
        assert_eq!(joined(&normalise_name("Smith-Jones")), "smithjones");
        assert_eq!(normalise_name("O'Brien"), "obrien");
        assert_eq!(normalise_name("O’Brien"), "obrien");
        assert_eq!(normalise_name("St. John"), "st john");
    }

    #[test]
    fn nicknames() {
        assert!(nickname_equivalent("bill", "william"));
        assert!(nickname_equivalent("billy", "bill"));
        assert!(nickname_equivalent("liz", "elizabeth"));
        assert!(nickname_equivalent("kate", "catherine"));
        assert!(nickname_equivalent("jack", "john"));
        assert!(nickname_equivalent("sam", "samuel"));
        assert!(nickname_equivalent("sam", "samantha"));
        assert!(
            !nickname_equivalent("samuel", "samantha"),
            "sharing a nickname does not make two full names one"
        );
        assert!(!nickname_equivalent("bill", "robert"));
        assert!(!nickname_equivalent("zebedee", "zebedee"), "only the table");
    }

    #[test]
    fn soundex_codes() {
        let s = |n: &str| {
            soundex(n).map(|c| format!("{}{:03}", (b'A' + (c / 1000) as u8) as char, c % 1000))
        };
        assert_eq!(s("robert").as_deref(), Some("R163"));
        assert_eq!(s("rupert").as_deref(), Some("R163"));
        assert_eq!(s("ashcraft").as_deref(), Some("A261"));
        assert_eq!(s("tymczak").as_deref(), Some("T522"));
        assert_eq!(s("pfister").as_deref(), Some("P236"));
        assert_eq!(s("smith"), s("smyth"));
        assert_eq!(s("lee").as_deref(), Some("L000"));
        assert_eq!(soundex(""), None);
    }

    #[test]
    fn postcodes() {
        assert_eq!(normalise_postcode("wr1 2ab").as_deref(), Some("WR12AB"));
        assert_eq!(normalise_postcode(" B60 1AA ").as_deref(), Some("B601AA"));
        assert_eq!(normalise_postcode("EC1A 1BB").as_deref(), Some("EC1A1BB"));
        assert_eq!(normalise_postcode("M1 1AE").as_deref(), Some("M11AE"));
        assert_eq!(normalise_postcode("not a postcode"), None);
        assert_eq!(normalise_postcode("WR 2AB"), None);
        assert_eq!(outward_code("WR12AB"), "WR1");
        assert_eq!(outward_code("EC1A1BB"), "EC1A");
        assert_eq!(postcode_area("WR1"), "WR");
        assert_eq!(postcode_area("B60"), "B");
    }
}
