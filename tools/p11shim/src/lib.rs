//! hsmkey-p11shim: a PKCS#11 module that forwards every call to a real one,
//! for hsmkey's tests and benchmarks. It is never part of hsmkey itself.
//!
//! Configured from the environment when the calling program asks for the
//! function list:
//!
//! - `HSMKEY_SHIM_MODULE`: path of the real module (required);
//! - `HSMKEY_SHIM_DELAY_US`: microseconds to sleep before forwarding each call,
//!   as a network HSM's round trip would (default 0). The sleep holds no lock,
//!   so calls on different sessions wait in parallel;
//! - `HSMKEY_SHIM_FAULT`: faults to inject, separated by `;`, each
//!   `FUNCTION:CKR:after=N[:times=M]`: after N calls of FUNCTION have been
//!   forwarded, the next M calls (default: all of them) return CKR without
//!   reaching the real module. CKR is a number (`0x30`) or one of the names in
//!   [`spec`]'s table (`CKR_DEVICE_ERROR`, ...);
//! - `HSMKEY_SHIM_HIDE_TOKENS`: how many of the first C_GetSlotList calls
//!   that ask for slots with a token are answered "none" (CKR_OK, count 0)
//!   without reaching the real module, as SoftHSM answers when it could not
//!   read a token's files at C_Initialize (default 0). cryptoki makes two
//!   such calls per listing (the size query, then the list);
//! - `HSMKEY_SHIM_COUNTS`: a file that receives, whenever a session closes
//!   (C_CloseSession, C_CloseAllSessions) or the module is finalized, how many
//!   times each function was called.
//!
//! C_GetFunctionList is answered by the shim (with its own list); the 67
//! other functions of the 2.40 list are forwarded.
//!
//! A bad configuration makes C_GetFunctionList fail with CKR_GENERAL_ERROR
//! and says why on stderr.
//!
//! A faulted call never reaches the real module, so it has none of the side
//! effects a real failure would: a C_Encrypt or C_Sign that fails for real
//! ends the operation its *Init began, a faulted one leaves it active in the
//! module. Inject faults in calls that start or finish nothing (C_WrapKey,
//! C_UnwrapKey, C_GetAttributeValue, C_OpenSession, C_GenerateKey...) or
//! in the *Init calls themselves.

use std::ffi::c_void;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use cryptoki_sys::*;

pub mod spec;

use spec::Fault;

struct Real {
    // Keeps the real module mapped for as long as the process runs.
    _library: libloading::Library,
    list: *const CK_FUNCTION_LIST,
}

// SAFETY: the function list is an immutable table owned by the real module,
// which stays loaded; PKCS#11 modules initialized with CKF_OS_LOCKING_OK are
// callable from any thread, and the shim adds only atomics and a mutex.
unsafe impl Send for Real {}
// SAFETY: as above; nothing writes through the pointer.
unsafe impl Sync for Real {}

struct State {
    real: Real,
    delay: Duration,
    faults: Vec<Fault>,
    calls: Vec<AtomicU64>,
    counts_path: Option<String>,
    counts_lock: Mutex<()>,
    hide_tokens: AtomicU64,
}

static STATE: OnceLock<Result<State, String>> = OnceLock::new();

thread_local! {
    /// Set while this thread loads the real module.
    static LOADING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn load() -> Result<State, String> {
    let path = std::env::var("HSMKEY_SHIM_MODULE")
        .map_err(|_| "HSMKEY_SHIM_MODULE is not set: name the real PKCS#11 module".to_string())?;
    let delay =
        match std::env::var("HSMKEY_SHIM_DELAY_US") {
            Ok(v) => Duration::from_micros(v.trim().parse().map_err(|_| {
                format!("HSMKEY_SHIM_DELAY_US={v:?} is not a number of microseconds")
            })?),
            Err(_) => Duration::ZERO,
        };
    let faults = match std::env::var("HSMKEY_SHIM_FAULT") {
        Ok(v) => spec::parse_faults(&v, NAMES)?,
        Err(_) => Vec::new(),
    };
    // SAFETY: loading a PKCS#11 module runs its initializers, which is what
    // any PKCS#11 application does with the module it is given.
    let library = unsafe { libloading::Library::new(&path) }
        .map_err(|e| format!("cannot load {path}: {e}"))?;
    type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
    // SAFETY: C_GetFunctionList has this signature in every PKCS#11 version.
    let get: libloading::Symbol<GetFunctionList> =
        unsafe { library.get(b"C_GetFunctionList\0") }
            .map_err(|e| format!("{path} has no C_GetFunctionList: {e}"))?;
    let mut list: *mut CK_FUNCTION_LIST = std::ptr::null_mut();
    // SAFETY: `list` is a valid out-pointer for the call.
    let rv = unsafe { get(&mut list) };
    if rv != CKR_OK || list.is_null() || std::ptr::eq(list, &LIST) {
        return Err(format!(
            "{path}: C_GetFunctionList returned 0x{rv:08X} (is it the shim itself?)"
        ));
    }

    Ok(State {
        real: Real {
            _library: library,
            list,
        },
        delay,
        faults,
        calls: NAMES.iter().map(|_| AtomicU64::new(0)).collect(),
        counts_path: std::env::var("HSMKEY_SHIM_COUNTS").ok(),
        counts_lock: Mutex::new(()),
        hide_tokens: AtomicU64::new(match std::env::var("HSMKEY_SHIM_HIDE_TOKENS") {
            Ok(v) => v
                .trim()
                .parse()
                .map_err(|_| format!("HSMKEY_SHIM_HIDE_TOKENS={v:?} is not a number of calls"))?,
            Err(_) => 0,
        }),
    })
}

fn state() -> Option<&'static State> {
    STATE.get().and_then(|s| s.as_ref().ok())
}

impl State {
    fn real(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: checked non-null in `load`; the table lives as long as the
        // library, which `self` keeps loaded.
        unsafe { &*self.real.list }
    }

    /// Count the call, wait, and say whether a fault replaces it.
    fn before(&self, f: Func) -> Option<CK_RV> {
        let index = f as usize;
        let n = self.calls[index].fetch_add(1, Ordering::SeqCst);
        if !self.delay.is_zero() {
            std::thread::sleep(self.delay);
        }
        self.faults
            .iter()
            .filter(|fault| fault.function == index)
            .find_map(|fault| fault.fires(n))
    }

    fn write_counts(&self) {
        let Some(path) = &self.counts_path else {
            return;
        };
        let _guard = self.counts_lock.lock();
        let mut text = String::new();
        for (name, calls) in NAMES.iter().zip(&self.calls) {
            let n = calls.load(Ordering::SeqCst);
            if n > 0 {
                text.push_str(&format!("{name} {n}\n"));
            }
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("hsmkey-p11shim: cannot write call counts to {path}: {e}");
        }
    }

    /// Total calls forwarded or faulted so far.
    fn total(&self) -> u64 {
        self.calls.iter().map(|c| c.load(Ordering::SeqCst)).sum()
    }
}

/// The entry point: loads the real module on first use and hands out the
/// shim's own function list.
///
/// # Safety
/// `list` must be a valid pointer to write the function list pointer to.
#[no_mangle]
pub unsafe extern "C" fn C_GetFunctionList(list: *mut *mut CK_FUNCTION_LIST) -> CK_RV {
    if list.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    // HSMKEY_SHIM_MODULE naming the shim itself brings the loader back here
    // while the state is being made: refuse instead of waiting on ourselves.
    if LOADING.with(|l| l.replace(true)) {
        return CKR_GENERAL_ERROR;
    }
    let state = STATE.get_or_init(load);
    LOADING.with(|l| l.set(false));
    match state {
        Ok(_) => {
            // SAFETY: checked non-null above; the caller owns the out-pointer.
            unsafe { *list = std::ptr::addr_of!(LIST) as *mut CK_FUNCTION_LIST };
            CKR_OK
        }
        Err(reason) => {
            eprintln!("hsmkey-p11shim: {reason}");
            CKR_GENERAL_ERROR
        }
    }
}

macro_rules! shims {
    ($($name:ident($($a:ident: $t:ty),*);)*) => {
        /// Every forwarded function, in function-list order.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        enum Func { $($name,)* }

        /// Names of the forwarded functions, indexed like [`Func`].
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        #[allow(non_snake_case, clippy::too_many_arguments)]
        mod forward {
            use super::*;
            $(
                pub(super) unsafe extern "C" fn $name($($a: $t),*) -> CK_RV {
                    let Some(st) = state() else {
                        return CKR_GENERAL_ERROR;
                    };
                    if let Some(rv) = st.before(Func::$name) {
                        return rv;
                    }
                    let rv = match st.real().$name {
                        // SAFETY: the arguments come unchanged from the caller,
                        // who owes the real module what it owes any module.
                        Some(f) => unsafe { f($($a),*) },
                        None => CKR_FUNCTION_NOT_SUPPORTED,
                    };
                    after(st, Func::$name);
                    rv
                }
            )*
        }

        const FORWARDED: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
            version: CK_VERSION { major: 2, minor: 40 },
            C_GetFunctionList: Some(C_GetFunctionList),
            $($name: Some(forward::$name),)*
        };
    };
}

static LIST: CK_FUNCTION_LIST = CK_FUNCTION_LIST {
    C_GetSlotList: Some(get_slot_list),
    ..FORWARDED
};

/// C_GetSlotList, answering "no token" while HSMKEY_SHIM_HIDE_TOKENS lasts.
unsafe extern "C" fn get_slot_list(
    token_present: CK_BBOOL,
    slots: *mut CK_SLOT_ID,
    count: *mut CK_ULONG,
) -> CK_RV {
    if let Some(st) = state() {
        let hide = token_present != CK_FALSE
            && st
                .hide_tokens
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if hide {
            if count.is_null() {
                return CKR_ARGUMENTS_BAD;
            }
            st.calls[Func::C_GetSlotList as usize].fetch_add(1, Ordering::SeqCst);
            // SAFETY: checked non-null; the caller owns the out-pointer.
            unsafe { *count = 0 };
            return CKR_OK;
        }
    }
    // SAFETY: the arguments come unchanged from the caller.
    unsafe { forward::C_GetSlotList(token_present, slots, count) }
}

fn after(st: &State, f: Func) {
    if matches!(
        f,
        Func::C_CloseSession | Func::C_CloseAllSessions | Func::C_Finalize
    ) {
        st.write_counts();
    }
}

/// Calls counted so far (for the crate's own tests).
pub fn total_calls() -> u64 {
    state().map(State::total).unwrap_or(0)
}

shims! {
    C_Initialize(a1: *mut c_void);
    C_Finalize(a1: *mut c_void);
    C_GetInfo(a1: *mut CK_INFO);
    C_GetSlotList(a1: CK_BBOOL, a2: *mut CK_SLOT_ID, a3: *mut CK_ULONG);
    C_GetSlotInfo(a1: CK_SLOT_ID, a2: *mut CK_SLOT_INFO);
    C_GetTokenInfo(a1: CK_SLOT_ID, a2: *mut CK_TOKEN_INFO);
    C_GetMechanismList(a1: CK_SLOT_ID, a2: *mut CK_MECHANISM_TYPE, a3: *mut CK_ULONG);
    C_GetMechanismInfo(a1: CK_SLOT_ID, a2: CK_MECHANISM_TYPE, a3: *mut CK_MECHANISM_INFO);
    C_InitToken(a1: CK_SLOT_ID, a2: *mut CK_UTF8CHAR, a3: CK_ULONG, a4: *mut CK_UTF8CHAR);
    C_InitPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG);
    C_SetPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG, a4: *mut CK_UTF8CHAR, a5: CK_ULONG);
    C_OpenSession(a1: CK_SLOT_ID, a2: CK_FLAGS, a3: *mut c_void, a4: CK_NOTIFY, a5: *mut CK_SESSION_HANDLE);
    C_CloseSession(a1: CK_SESSION_HANDLE);
    C_CloseAllSessions(a1: CK_SLOT_ID);
    C_GetSessionInfo(a1: CK_SESSION_HANDLE, a2: *mut CK_SESSION_INFO);
    C_GetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: CK_OBJECT_HANDLE, a5: CK_OBJECT_HANDLE);
    C_Login(a1: CK_SESSION_HANDLE, a2: CK_USER_TYPE, a3: *mut CK_UTF8CHAR, a4: CK_ULONG);
    C_Logout(a1: CK_SESSION_HANDLE);
    C_CreateObject(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG, a4: *mut CK_OBJECT_HANDLE);
    C_CopyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE);
    C_DestroyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE);
    C_GetObjectSize(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ULONG);
    C_GetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG);
    C_SetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG);
    C_FindObjectsInit(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG);
    C_FindObjects(a1: CK_SESSION_HANDLE, a2: *mut CK_OBJECT_HANDLE, a3: CK_ULONG, a4: *mut CK_ULONG);
    C_FindObjectsFinal(a1: CK_SESSION_HANDLE);
    C_EncryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Encrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_EncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_EncryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_DecryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Decrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_DigestInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM);
    C_Digest(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_DigestKey(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE);
    C_DigestFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SignInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Sign(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_SignUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_SignFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG);
    C_SignRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_SignRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_VerifyInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_Verify(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG);
    C_VerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_VerifyFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_VerifyRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE);
    C_VerifyRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DigestEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptDigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_SignEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_DecryptVerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG);
    C_GenerateKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE);
    C_GenerateKeyPair(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_ATTRIBUTE, a6: CK_ULONG, a7: *mut CK_OBJECT_HANDLE, a8: *mut CK_OBJECT_HANDLE);
    C_WrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: CK_OBJECT_HANDLE, a5: *mut CK_BYTE, a6: *mut CK_ULONG);
    C_UnwrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_ATTRIBUTE, a7: CK_ULONG, a8: *mut CK_OBJECT_HANDLE);
    C_DeriveKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_ATTRIBUTE, a5: CK_ULONG, a6: *mut CK_OBJECT_HANDLE);
    C_SeedRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_GenerateRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG);
    C_GetFunctionStatus(a1: CK_SESSION_HANDLE);
    C_CancelFunction(a1: CK_SESSION_HANDLE);
    C_WaitForSlotEvent(a1: CK_FLAGS, a2: *mut CK_SLOT_ID, a3: *mut c_void);
}
