//! The fault specification read from HSMKEY_SHIM_FAULT.

use cryptoki_sys::*;

/// One injected fault: calls of `function` numbered `after` and later (from
/// 0), `times` of them or all, return `rv` instead of reaching the module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub function: usize,
    pub rv: CK_RV,
    pub after: u64,
    pub times: Option<u64>,
}

impl Fault {
    /// The code to return for the call numbered `n` (from 0), if it faults.
    pub fn fires(&self, n: u64) -> Option<CK_RV> {
        let past = n.checked_sub(self.after)?;
        match self.times {
            Some(t) if past >= t => None,
            _ => Some(self.rv),
        }
    }
}

/// Return codes that can be named in a fault; any other is given as a number.
const CODES: &[(&str, CK_RV)] = &[
    ("CKR_CANCEL", CKR_CANCEL),
    ("CKR_HOST_MEMORY", CKR_HOST_MEMORY),
    ("CKR_GENERAL_ERROR", CKR_GENERAL_ERROR),
    ("CKR_FUNCTION_FAILED", CKR_FUNCTION_FAILED),
    ("CKR_ARGUMENTS_BAD", CKR_ARGUMENTS_BAD),
    ("CKR_ATTRIBUTE_VALUE_INVALID", CKR_ATTRIBUTE_VALUE_INVALID),
    ("CKR_DATA_INVALID", CKR_DATA_INVALID),
    ("CKR_DEVICE_ERROR", CKR_DEVICE_ERROR),
    ("CKR_DEVICE_MEMORY", CKR_DEVICE_MEMORY),
    ("CKR_DEVICE_REMOVED", CKR_DEVICE_REMOVED),
    ("CKR_ENCRYPTED_DATA_INVALID", CKR_ENCRYPTED_DATA_INVALID),
    ("CKR_FUNCTION_CANCELED", CKR_FUNCTION_CANCELED),
    ("CKR_KEY_HANDLE_INVALID", CKR_KEY_HANDLE_INVALID),
    ("CKR_KEY_NOT_WRAPPABLE", CKR_KEY_NOT_WRAPPABLE),
    ("CKR_KEY_UNEXTRACTABLE", CKR_KEY_UNEXTRACTABLE),
    ("CKR_MECHANISM_INVALID", CKR_MECHANISM_INVALID),
    ("CKR_OBJECT_HANDLE_INVALID", CKR_OBJECT_HANDLE_INVALID),
    ("CKR_OPERATION_ACTIVE", CKR_OPERATION_ACTIVE),
    ("CKR_PIN_INCORRECT", CKR_PIN_INCORRECT),
    ("CKR_SESSION_CLOSED", CKR_SESSION_CLOSED),
    ("CKR_SESSION_COUNT", CKR_SESSION_COUNT),
    ("CKR_SESSION_HANDLE_INVALID", CKR_SESSION_HANDLE_INVALID),
    ("CKR_SIGNATURE_INVALID", CKR_SIGNATURE_INVALID),
    ("CKR_TEMPLATE_INCONSISTENT", CKR_TEMPLATE_INCONSISTENT),
    ("CKR_TOKEN_NOT_PRESENT", CKR_TOKEN_NOT_PRESENT),
    (
        "CKR_UNWRAPPING_KEY_HANDLE_INVALID",
        CKR_UNWRAPPING_KEY_HANDLE_INVALID,
    ),
    ("CKR_USER_NOT_LOGGED_IN", CKR_USER_NOT_LOGGED_IN),
    ("CKR_WRAPPED_KEY_INVALID", CKR_WRAPPED_KEY_INVALID),
    (
        "CKR_WRAPPING_KEY_HANDLE_INVALID",
        CKR_WRAPPING_KEY_HANDLE_INVALID,
    ),
    ("CKR_BUFFER_TOO_SMALL", CKR_BUFFER_TOO_SMALL),
    ("CKR_CRYPTOKI_NOT_INITIALIZED", CKR_CRYPTOKI_NOT_INITIALIZED),
];

fn parse_rv(s: &str) -> Result<CK_RV, String> {
    if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        return CK_RV::from_str_radix(hex, 16).map_err(|_| format!("{s:?} is not a hex CKR code"));
    }
    if let Ok(n) = s.parse::<CK_RV>() {
        return Ok(n);
    }
    CODES
        .iter()
        .find(|(name, _)| *name == s)
        .map(|(_, rv)| *rv)
        .ok_or_else(|| {
            format!("unknown return code {s:?} (give a CKR_ name or a number such as 0x30)")
        })
}

fn parse_count(item: &str, key: &str) -> Result<u64, String> {
    item.strip_prefix(key)
        .and_then(|v| v.strip_prefix('='))
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{item:?}: expected {key}=<number>"))
}

/// Parse `FUNCTION:CKR:after=N[:times=M]` items separated by `;`. `names`
/// are the function names the shim forwards, indexed like its table.
pub fn parse_faults(spec: &str, names: &[&str]) -> Result<Vec<Fault>, String> {
    let mut faults = Vec::new();
    for item in spec.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        let parts: Vec<&str> = item.split(':').map(str::trim).collect();
        if parts.len() < 3 || parts.len() > 4 {
            return Err(format!(
                "HSMKEY_SHIM_FAULT item {item:?}: expected FUNCTION:CKR:after=N[:times=M]"
            ));
        }
        let function = names
            .iter()
            .position(|n| *n == parts[0])
            .ok_or_else(|| format!("HSMKEY_SHIM_FAULT: unknown function {:?}", parts[0]))?;
        let rv = parse_rv(parts[1]).map_err(|e| format!("HSMKEY_SHIM_FAULT: {e}"))?;
        if rv == CKR_OK {
            return Err(format!(
                "HSMKEY_SHIM_FAULT item {item:?}: CKR_OK is not a fault"
            ));
        }
        let after =
            parse_count(parts[2], "after").map_err(|e| format!("HSMKEY_SHIM_FAULT: {e}"))?;
        let times = match parts.get(3) {
            Some(t) => {
                Some(parse_count(t, "times").map_err(|e| format!("HSMKEY_SHIM_FAULT: {e}"))?)
            }
            None => None,
        };
        faults.push(Fault {
            function,
            rv,
            after,
            times,
        });
    }
    Ok(faults)
}

/// A call to hold until the test says go: the call numbered `after` (from
/// 0) of `function` on the session the `session`-th C_OpenSession (from 0)
/// opened. The shim creates `PATH.paused`, then waits for `PATH.go`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pause {
    pub function: usize,
    pub session: usize,
    pub after: u64,
    pub path: String,
}

/// Parse `FUNCTION:session=S:after=N:PATH`; `pausable` are the names of
/// the functions whose first argument is a session.
pub fn parse_pause(spec: &str, names: &[&str], pausable: &[&str]) -> Result<Pause, String> {
    let bad = |why: String| format!("HSMKEY_SHIM_PAUSE {spec:?}: {why}");
    let parts: Vec<&str> = spec.trim().splitn(4, ':').collect();
    if parts.len() != 4 || parts[3].is_empty() {
        return Err(bad("expected FUNCTION:session=S:after=N:PATH".into()));
    }
    if !pausable.contains(&parts[0]) {
        return Err(bad(format!(
            "{:?} is not a function the shim can pause (one of {})",
            parts[0],
            pausable.join(", ")
        )));
    }
    let function = names
        .iter()
        .position(|n| *n == parts[0])
        .ok_or_else(|| bad(format!("unknown function {:?}", parts[0])))?;
    let session = parse_count(parts[1], "session").map_err(bad)? as usize;
    let after = parse_count(parts[2], "after").map_err(bad)?;
    Ok(Pause {
        function,
        session,
        after,
        path: parts[3].to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &["C_Initialize", "C_WrapKey", "C_UnwrapKey"];

    #[test]
    fn a_fault_names_function_code_and_count() {
        let f = parse_faults(
            "C_WrapKey:CKR_DEVICE_ERROR:after=3; C_UnwrapKey:0x40:after=0:times=1",
            NAMES,
        )
        .unwrap();
        assert_eq!(
            f,
            vec![
                Fault {
                    function: 1,
                    rv: 0x30,
                    after: 3,
                    times: None
                },
                Fault {
                    function: 2,
                    rv: 0x40,
                    after: 0,
                    times: Some(1)
                },
            ]
        );
    }

    #[test]
    fn faults_fire_from_the_count_on_and_stop_after_times() {
        let always = Fault {
            function: 0,
            rv: 0x30,
            after: 2,
            times: None,
        };
        let fired: Vec<_> = (0..5).map(|n| always.fires(n)).collect();
        assert_eq!(fired, vec![None, None, Some(0x30), Some(0x30), Some(0x30)]);
        let once = Fault {
            times: Some(1),
            ..always
        };
        let fired: Vec<_> = (0..5).map(|n| once.fires(n)).collect();
        assert_eq!(fired, vec![None, None, Some(0x30), None, None]);
    }

    #[test]
    fn a_pause_names_function_session_count_and_path() {
        let p = parse_pause(
            "C_WrapKey:session=1:after=2:/tmp/gate",
            NAMES,
            &["C_WrapKey"],
        );
        assert_eq!(
            p.unwrap(),
            Pause {
                function: 1,
                session: 1,
                after: 2,
                path: "/tmp/gate".into()
            }
        );
        for (spec, needle) in [
            (
                "C_Initialize:session=0:after=0:/g",
                "not a function the shim can pause",
            ),
            ("C_WrapKey:session=x:after=0:/g", "session=<number>"),
            ("C_WrapKey:session=0:after=0", "expected FUNCTION"),
        ] {
            let e = parse_pause(spec, NAMES, &["C_WrapKey"]).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }

    #[test]
    fn bad_specifications_are_refused_with_the_reason() {
        for (spec, needle) in [
            ("C_Nope:CKR_DEVICE_ERROR:after=1", "unknown function"),
            ("C_WrapKey:CKR_NOPE:after=1", "unknown return code"),
            ("C_WrapKey:CKR_DEVICE_ERROR", "expected FUNCTION:CKR"),
            ("C_WrapKey:CKR_DEVICE_ERROR:after=x", "after=<number>"),
            ("C_WrapKey:0:after=1", "CKR_OK is not a fault"),
            ("C_WrapKey:0x30:after=1:times=", "times=<number>"),
        ] {
            let e = parse_faults(spec, NAMES).unwrap_err();
            assert!(e.contains(needle), "{spec}: {e}");
        }
    }
}
