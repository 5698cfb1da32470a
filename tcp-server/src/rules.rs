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

/// The form usernames are compared in: ASCII lowercase (usernames are ASCII).
pub fn username_key(username: &str) -> String {
    username.to_ascii_lowercase()
}

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
/// first 100 characters only, so a long password costs no more than one of 100.
pub fn check_strength(password: &str, context: &[&str]) -> Result<(), Weak> {
    let estimate = zxcvbn::zxcvbn(password, context);
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
