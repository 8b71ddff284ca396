//! Finding the key in request headers, without any HTTP framework: the caller passes the raw
//! values of `Authorization` and `X-API-Key` (all occurrences, so repeats can be refused).

use subtle::ConstantTimeEq;

use crate::store::AuthError;

/// Returns the presented key from `Authorization: Bearer KEY` and/or `X-API-Key: KEY`.
///
/// Both headers may be sent if they carry the same key; different keys are refused rather than
/// guessing which one the client meant. A repeated header is refused for the same reason.
pub fn presented_key<'a>(
    authorization: &[&'a [u8]],
    x_api_key: &[&'a [u8]],
) -> Result<&'a [u8], AuthError> {
    let bearer = match authorization {
        [] => None,
        [value] => Some(bearer_token(value)?),
        _ => return Err(AuthError::Malformed("repeated Authorization header")),
    };
    let api_key = match x_api_key {
        [] => None,
        [value] => Some(non_empty(trim(value), "empty X-API-Key header")?),
        _ => return Err(AuthError::Malformed("repeated X-API-Key header")),
    };
    match (bearer, api_key) {
        (None, None) => Err(AuthError::Missing),
        (Some(key), None) | (None, Some(key)) => Ok(key),
        (Some(a), Some(b)) => {
            if a.len() == b.len() && bool::from(a.ct_eq(b)) {
                Ok(a)
            } else {
                Err(AuthError::Conflicting)
            }
        }
    }
}

fn bearer_token(value: &[u8]) -> Result<&[u8], AuthError> {
    let value = trim(value);
    const SCHEME: &[u8] = b"bearer";
    // The scheme name is case-insensitive (RFC 9110, section 11.1).
    let scheme_ok = value.len() > SCHEME.len()
        && value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME)
        && matches!(value[SCHEME.len()], b' ' | b'\t');
    if !scheme_ok {
        return Err(AuthError::Malformed(
            "Authorization must be \"Bearer <key>\"",
        ));
    }
    let token = non_empty(trim(&value[SCHEME.len()..]), "empty bearer token")?;
    if token.iter().any(|b| matches!(b, b' ' | b'\t')) {
        return Err(AuthError::Malformed("bearer token contains whitespace"));
    }
    Ok(token)
}

fn non_empty<'a>(value: &'a [u8], reason: &'static str) -> Result<&'a [u8], AuthError> {
    if value.is_empty() {
        Err(AuthError::Malformed(reason))
    } else {
        Ok(value)
    }
}

fn trim(value: &[u8]) -> &[u8] {
    value.trim_ascii()
}
