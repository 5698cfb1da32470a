//! The account rules: what a valid username, password and nickname are.

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
