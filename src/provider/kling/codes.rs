//! Kling error classification: one table from (business code, HTTP status,
//! operation) to the [`ErrorClass`] the scheduler acts on.
//!
//! The business code decides first (kling-api.md §8): 1102 and 1303 are both
//! HTTP 429 yet one is fatal and the other only means "wait for a slot". The
//! HTTP status only decides for codes Kling never documented and for bodies
//! that are not Kling JSON at all (gateway HTML pages, empty 401s).

use crate::provider::ErrorClass;

/// Which kind of call failed: the same 5xx means "maybe created" for a create
/// but only "try again" for a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Create,
    Query,
    List,
}

impl Op {
    fn is_create(self) -> bool {
        matches!(self, Op::Create)
    }
}

/// Classify a failed call. `code` is the business code when the body carried
/// one, `http_status` the HTTP status when a response arrived.
pub fn classify(code: Option<i64>, http_status: Option<u16>, op: Op) -> ErrorClass {
    match code {
        Some(1303) => ErrorClass::SlotFull,
        Some(1302 | 5001) => ErrorClass::RetryLater,
        Some(5000 | 5002) => server_side(op),
        Some(1003 | 1004) => ErrorClass::AuthExpired,
        Some(1000 | 1001 | 1002 | 1100 | 1101 | 1102 | 1304) => ErrorClass::BatchFatal,
        // 1202 "the requested method is invalid" (HTTP 404): the route does
        // not exist, which is what a wrong path in the base URL looks like.
        Some(1202) => ErrorClass::Setup,
        Some(1103 | 1200 | 1201 | 1203 | 1300 | 1301) => ErrorClass::ItemInvalid,
        // Code 0 with an error HTTP status, an undocumented code, or no code.
        Some(_) | None => by_status(http_status, op),
    }
}

/// Classification when only the HTTP status is known.
pub fn by_status(http_status: Option<u16>, op: Op) -> ErrorClass {
    match http_status {
        Some(429) => ErrorClass::RetryLater,
        Some(401 | 403) => ErrorClass::BatchFatal,
        Some(400..=499) => ErrorClass::ItemInvalid,
        Some(500..=599) => server_side(op),
        // A 2xx/3xx that still failed (unparseable body, no data): the server
        // answered, so for a create the task may well exist.
        Some(_) | None => server_side(op),
    }
}

/// A server-side failure: a create may have gone through, a read may simply be retried.
fn server_side(op: Op) -> ErrorClass {
    if op.is_create() {
        ErrorClass::Ambiguous
    } else {
        ErrorClass::RetryLater
    }
}

/// Whether a failed single-task lookup means "there is no such task": 404 /
/// 1203 as documented, and 1200/1201 because a server that does not accept an
/// external id in the path rejects it as an invalid parameter.
/// A body that is not a Kling envelope. A page in place of the API (a 2xx
/// from a web server, a 404/405 for a route it does not have, a redirect) is
/// about the setup: nothing reached Kling. Anything else (a proxy's 5xx, a
/// 429 page) is classified by its status as usual.
pub fn non_api_body(http_status: u16, op: Op) -> ErrorClass {
    match http_status {
        200..=399 | 404 | 405 => ErrorClass::Setup,
        other => by_status(Some(other), op),
    }
}

/// What the user should do about a business code that stops the batch
/// (kling-api.md §8), or `None` when the code says nothing specific.
pub fn hint(code: Option<i64>) -> Option<&'static str> {
    Some(match code? {
        1000..=1004 => {
            "check KLING_ACCESS_KEY / KLING_SECRET_KEY (or KLING_API_KEY) and the system clock"
        }
        1100 => "the account has a problem; contact Kling support",
        1101 => "the account is in arrears; top up",
        1102 => "the resource pack is used up or expired; buy units, then rerun to continue",
        1304 => "this IP is not on the account's whitelist",
        _ => return None,
    })
}

pub fn is_not_found(code: Option<i64>, http_status: Option<u16>) -> bool {
    match code {
        Some(1200 | 1201 | 1203) => true,
        Some(0) | None => http_status == Some(404),
        Some(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ErrorClass::*;

    /// Every code of kling-api.md §8 with its documented HTTP status.
    const TABLE: &[(i64, u16, ErrorClass, ErrorClass)] = &[
        // (code, http, class for create, class for query/list)
        (1000, 401, BatchFatal, BatchFatal),
        (1001, 401, BatchFatal, BatchFatal),
        (1002, 401, BatchFatal, BatchFatal),
        (1003, 401, AuthExpired, AuthExpired),
        (1004, 401, AuthExpired, AuthExpired),
        (1100, 429, BatchFatal, BatchFatal),
        (1101, 429, BatchFatal, BatchFatal),
        (1102, 429, BatchFatal, BatchFatal),
        (1103, 403, ItemInvalid, ItemInvalid),
        (1200, 400, ItemInvalid, ItemInvalid),
        (1201, 400, ItemInvalid, ItemInvalid),
        (1202, 404, Setup, Setup),
        (1203, 404, ItemInvalid, ItemInvalid),
        (1300, 400, ItemInvalid, ItemInvalid),
        (1301, 400, ItemInvalid, ItemInvalid),
        (1302, 429, RetryLater, RetryLater),
        (1303, 429, SlotFull, SlotFull),
        (1304, 429, BatchFatal, BatchFatal),
        (5000, 500, Ambiguous, RetryLater),
        (5001, 503, RetryLater, RetryLater),
        (5002, 504, Ambiguous, RetryLater),
    ];

    #[test]
    fn every_documented_code() {
        for &(code, http, create, read) in TABLE {
            assert_eq!(
                classify(Some(code), Some(http), Op::Create),
                create,
                "code {code} create"
            );
            assert_eq!(
                classify(Some(code), Some(http), Op::Query),
                read,
                "code {code} query"
            );
            assert_eq!(
                classify(Some(code), Some(http), Op::List),
                read,
                "code {code} list"
            );
        }
    }

    #[test]
    fn code_wins_over_http_status() {
        // 1102 and 1303 share HTTP 429 but mean opposite things.
        assert_eq!(classify(Some(1102), Some(429), Op::Create), BatchFatal);
        assert_eq!(classify(Some(1303), Some(429), Op::Create), SlotFull);
        // A documented code behind an unexpected status still decides.
        assert_eq!(classify(Some(1303), Some(200), Op::Create), SlotFull);
    }

    #[test]
    fn unknown_code_falls_back_to_status() {
        assert_eq!(classify(Some(9999), Some(429), Op::Create), RetryLater);
        assert_eq!(classify(Some(9999), Some(502), Op::Create), Ambiguous);
        assert_eq!(classify(Some(9999), Some(502), Op::Query), RetryLater);
        assert_eq!(classify(Some(9999), Some(401), Op::Query), BatchFatal);
        assert_eq!(classify(Some(9999), Some(403), Op::Create), BatchFatal);
        assert_eq!(classify(Some(9999), Some(422), Op::Create), ItemInvalid);
        assert_eq!(classify(None, Some(503), Op::List), RetryLater);
        assert_eq!(classify(None, Some(500), Op::Create), Ambiguous);
        assert_eq!(classify(None, Some(200), Op::Create), Ambiguous);
        assert_eq!(classify(None, Some(200), Op::Query), RetryLater);
        assert_eq!(classify(Some(0), Some(404), Op::Query), ItemInvalid);
    }

    #[test]
    fn fatal_codes_say_what_to_fix() {
        assert!(hint(Some(1002)).unwrap().contains("KLING_ACCESS_KEY"));
        assert!(hint(Some(1004)).unwrap().contains("system clock"));
        assert!(hint(Some(1102)).unwrap().contains("resource pack"));
        assert!(hint(Some(1304)).unwrap().contains("whitelist"));
        assert_eq!(hint(Some(1303)), None);
        assert_eq!(hint(None), None);
    }

    #[test]
    fn not_found_forms() {
        assert!(is_not_found(Some(1203), Some(404)));
        assert!(is_not_found(Some(1201), Some(400)));
        assert!(is_not_found(Some(1200), Some(400)));
        assert!(is_not_found(None, Some(404)));
        assert!(!is_not_found(None, Some(500)));
        assert!(!is_not_found(Some(1303), Some(429)));
        assert!(!is_not_found(Some(5000), Some(404)));
    }
}
