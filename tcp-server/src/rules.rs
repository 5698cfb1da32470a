//! The account rules: what a valid username, password and nickname are, and how hard a new
//! password must be to guess.

use zxcvbn::Score;

/// Why a field was refused; the message is shown to people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub &'static str);

/// Usernames are 3 to 32 ASCII letters, digits, `_`, `.` or `-`.
pub fn check_username(username: &str) -> Result<(), Invalid> {
    if !(3..=32).contains(&username.len()) {
        return Err(Invalid("a username has 3 to 32 characters"));
    }
    if !username
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
    {
        return Err(Invalid(
            "a username may only hold ASCII letters, digits, '_', '.' and '-'",
        ));
    }
    Ok(())
}

/// The form usernames are compared in, which http-server routes logins by: `proto`'s.
pub use proto::username_key;

/// Passwords are 8 to 128 Unicode characters, any characters.
pub fn check_password(password: &str) -> Result<(), Invalid> {
    let chars = password.chars().count();
    if !(8..=128).contains(&chars) {
        return Err(Invalid("a password has 8 to 128 characters"));
    }
    Ok(())
}

/// The least score of the zxcvbn estimator a new password must reach: 3, "safely
/// unguessable", about 10^10 guesses. NIST SP 800-63B asks that new passwords be checked
/// against breached, dictionary, repetitive and sequential ones and context-specific words; the
/// estimator knows the first three and is given the last (the username and nickname).
pub const MIN_STRENGTH: Score = Score::Three;

/// Why a new password was refused as too easy to guess: the estimator's own words, for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Weak(pub String);

/// A new password must reach [`MIN_STRENGTH`]; `context` holds what the account is known by
/// (its username and nickname), which a password must not lean on. The estimator reads the
/// start of the password it can afford ([`affordable_len`]): all of a password people choose.
pub fn check_strength(password: &str, context: &[&str]) -> Result<(), Weak> {
    let read: String = password.chars().take(affordable_len(password)).collect();
    let estimate = zxcvbn::zxcvbn(&read, context);
    if estimate.score() >= MIN_STRENGTH {
        return Ok(());
    }
    let mut message = String::from("this password is too easy to guess.");
    if let Some(feedback) = estimate.feedback() {
        if let Some(warning) = feedback.warning() {
            message.push_str(&format!(" {warning}"));
        }
        for suggestion in feedback.suggestions() {
            message.push_str(&format!(" {suggestion}"));
        }
    }
    Err(Weak(message))
}

/// What the estimator may spend on one password, in the units of [`estimate_cost`]. zxcvbn
/// runs its dictionary pass over every substring (length squared) once more for each table of
/// l33t substitutions the password's characters allow, and a password made of l33t symbols
/// (`4@8({[<3=6&!|1l7+0%9$5~2`, repeated) allows hundreds: whole, such a password costs it a
/// second of CPU, a cheap way for anyone to stall the service. Measured (`--bench strength`),
/// a unit costs about 0.25 µs, so the budget is about 2.5 ms: a passphrase of 70 characters, or
/// 25 random printable ones, is read whole, and no password yields a start under 12 characters,
/// already out of reach of guessing when it is random.
pub const ESTIMATE_BUDGET: u64 = 10_000;

/// zxcvbn's own l33t table (private to the crate): for each letter, the characters that may
/// stand for it.
const L33T_SUBSTITUTES: [&str; 12] = [
    "4@", "8", "({[<", "3", "69", "1!|", "1|7", "0", "$5", "+7", "%", "2",
];

/// The estimator's cost for a password of `len` characters whose l33t symbols are `present`
/// (one flag per character of [`L33T_SUBSTITUTES`], in order): `len`² for the plain dictionary
/// pass and once more for each substitution table.
fn estimate_cost(len: u64, present: &[Vec<bool>]) -> u64 {
    let tables: u64 = present
        .iter()
        .map(|subs| subs.iter().filter(|&&p| p).count().max(1) as u64)
        .product();
    (1 + tables) * len * len
}

/// How many characters of `password`, from its start, the estimator reads: as many as fit in
/// [`ESTIMATE_BUDGET`], and at most the 100 zxcvbn itself reads.
pub fn affordable_len(password: &str) -> usize {
    let mut present: Vec<Vec<bool>> = L33T_SUBSTITUTES
        .iter()
        .map(|subs| vec![false; subs.chars().count()])
        .collect();
    let mut len = 0;
    for c in password.chars().take(100) {
        for (subs, seen) in L33T_SUBSTITUTES.iter().zip(&mut present) {
            for (sub, flag) in subs.chars().zip(seen.iter_mut()) {
                *flag |= sub == c;
            }
        }
        if estimate_cost(len as u64 + 1, &present) > ESTIMATE_BUDGET {
            break;
        }
        len += 1;
    }
    len
}

/// Nicknames are trimmed, then must be 1 to 64 Unicode characters without control characters.
/// Returns the trimmed nickname.
pub fn check_nickname(nickname: &str) -> Result<String, Invalid> {
    let trimmed = nickname.trim();
    let chars = trimmed.chars().count();
    if !(1..=64).contains(&chars) {
        return Err(Invalid(
            "a nickname has 1 to 64 characters after trimming spaces",
        ));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(Invalid("a nickname may not hold control characters"));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "user_1.x-Y", &"a".repeat(32)] {
            assert_eq!(check_username(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ab",
            &"a".repeat(33),
            "has space",
            "émile",
            "semi;colon",
            "",
        ] {
            assert!(check_username(bad).is_err(), "{bad}");
        }
        assert_eq!(username_key("User.Name"), "user.name");
    }

    #[test]
    fn passwords_count_characters_not_bytes() {
        assert!(check_password("1234567").is_err());
        assert!(check_password("12345678").is_ok());
        assert!(
            check_password(&"é".repeat(128)).is_ok(),
            "256 bytes, 128 characters"
        );
        assert!(check_password(&"é".repeat(129)).is_err());
        assert!(check_password("🔑🔑🔑🔑🔑🔑🔑🔑").is_ok());
    }

    #[test]
    fn guessable_passwords_are_refused_with_the_reason() {
        let context = ["alice", "Alice Liddell"];
        for (weak, reason) in [
            ("password", "This is a top-10 common password."),
            ("12345678", "This is a top-10 common password."),
            ("qwertyuiop", "This is a top-100 common password."),
            ("iloveyou1", "This is a very common password."),
            ("alice2024", "Add another word or two."),
            ("aaaaaaaaaaaa", "Repeats like \"aaa\" are easy to guess."),
            (
                "abcdefghijk",
                "Sequences like abc or 6543 are easy to guess.",
            ),
            ("P@ssw0rd", "This is similar to a commonly used password."),
            // The account's own name and nickname count as known words.
            ("alice_alice_alice", "Add another word or two."),
            ("Alice Liddell", "Add another word or two."),
        ] {
            let Err(Weak(message)) = check_strength(weak, &context) else {
                panic!("{weak:?} was accepted");
            };
            assert!(
                message.starts_with("this password is too easy to guess.")
                    && message.contains(reason),
                "{weak:?}: {message}"
            );
        }
    }

    #[test]
    fn strong_passphrases_are_accepted() {
        for strong in [
            "correct horse battery staple",
            "violet harbour lantern 42",
            "q8#Lw!2vX9@rT",
            &"long enough passphrase ".repeat(6),
        ] {
            assert_eq!(
                check_strength(strong, &["alice", "Alice"]),
                Ok(()),
                "{strong}"
            );
        }
    }

    #[test]
    fn the_estimator_reads_all_of_a_chosen_password_and_a_bounded_start_of_a_hostile_one() {
        for whole in [
            "correct horse battery staple",
            "q8#Lw!2vX9@rT",
            &"violet harbour lantern copper ".repeat(2)[..60],
        ] {
            assert_eq!(affordable_len(whole), whole.chars().count(), "{whole}");
        }
        // Plain text is read to where its dictionary pass alone fills the budget.
        assert_eq!(affordable_len(&"word ".repeat(30)), 70);
        // A password of l33t symbols allows hundreds of substitution tables: only a start is
        // read, never a start too short to judge.
        let hostile = "4@8({[<3=6&!|1l7+0%9$5~2".repeat(6);
        let read = affordable_len(&hostile);
        assert!((12..=16).contains(&read), "{read}");
        assert_eq!(check_strength(&hostile, &[]), Ok(()));
        // The start of a weak password is weak: a long tail does not hide it.
        assert!(check_strength(&format!("password{}", "a".repeat(120)), &[]).is_err());
    }

    #[test]
    fn nicknames_are_trimmed_and_checked() {
        assert_eq!(check_nickname("  Zoë 🎉 "), Ok("Zoë 🎉".to_owned()));
        assert_eq!(check_nickname("山田"), Ok("山田".to_owned()));
        assert!(check_nickname("   ").is_err());
        assert!(check_nickname("").is_err());
        assert!(check_nickname(&"x".repeat(65)).is_err());
        assert!(check_nickname(&"字".repeat(64)).is_ok());
        assert!(check_nickname("tab\there").is_err());
        assert!(check_nickname("bell\u{7}").is_err());
    }
}
