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
//!   times each function was called;
//! - `HSMKEY_SHIM_TRACE`: a file that receives, at C_Finalize, one line per
//!   call: start and end (microseconds since the module was loaded), the
//!   thread, the session (0 for calls without one), the function and its
//!   return code: where a run's time goes, and which calls wait on others;
//! - `HSMKEY_SHIM_PAUSE`: `FUNCTION:session=S:after=N:PATH`: the call
//!   numbered N (from 0) of FUNCTION on the session that the S-th
//!   C_OpenSession (from 0) opened is held before it is forwarded: the shim
//!   creates `PATH.paused` and waits until `PATH.go` exists (at most a
//!   minute). A test changes the token meanwhile, as another program would
//!   between two calls.
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

use spec::{Fault, Pause};

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
    pause: Option<Pause>,
    /// Calls of the paused function on the paused session so far.
    pause_calls: AtomicU64,
    /// Session handles in the order C_OpenSession returned them.
    opened: Mutex<Vec<CK_SESSION_HANDLE>>,
    trace: Option<Trace>,
}

/// The calls of a run, for HSMKEY_SHIM_TRACE: written out whenever a
/// session closes, as the counts are (a program may exit without
/// C_Finalize).
struct Trace {
    path: String,
    start: std::time::Instant,
    /// Calls not yet written, and whether the file was started.
    calls: Mutex<(Vec<Call>, bool)>,
}

struct Call {
    start: u64,
    end: u64,
    thread: u64,
    session: CK_SESSION_HANDLE,
    function: usize,
    rv: CK_RV,
}

thread_local! {
    /// A small number per thread, for the trace.
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::SeqCst);
}

static NEXT_THREAD: AtomicU64 = AtomicU64::new(0);

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
    let pause = match std::env::var("HSMKEY_SHIM_PAUSE") {
        Ok(v) => Some(spec::parse_pause(&v, NAMES, PAUSABLE)?),
        Err(_) => None,
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
        pause,
        pause_calls: AtomicU64::new(0),
        opened: Mutex::new(Vec::new()),
        trace: std::env::var("HSMKEY_SHIM_TRACE").ok().map(|path| Trace {
            path,
            start: std::time::Instant::now(),
            calls: Mutex::new((Vec::new(), false)),
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

    /// Hold the call if it is the one HSMKEY_SHIM_PAUSE names.
    fn maybe_pause(&self, f: Func, session: CK_SESSION_HANDLE) {
        let Some(pause) = &self.pause else {
            return;
        };
        if pause.function != f as usize {
            return;
        }
        let opened = self.opened.lock().map(|o| o.get(pause.session).copied());
        if opened.ok().flatten() != Some(session) {
            return;
        }
        if self.pause_calls.fetch_add(1, Ordering::SeqCst) != pause.after {
            return;
        }
        let paused = format!("{}.paused", pause.path);
        let go = format!("{}.go", pause.path);
        if let Err(e) = std::fs::write(&paused, b"") {
            eprintln!("hsmkey-p11shim: cannot create {paused}: {e}");
            return;
        }
        let start = std::time::Instant::now();
        while !std::path::Path::new(&go).exists() && start.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Microseconds since the module was loaded (0 without a trace).
    fn now(&self) -> u64 {
        self.trace
            .as_ref()
            .map(|t| t.start.elapsed().as_micros() as u64)
            .unwrap_or(0)
    }

    fn traced(&self, f: Func, start: u64, session: CK_SESSION_HANDLE, rv: CK_RV) {
        let Some(trace) = &self.trace else {
            return;
        };
        let call = Call {
            start,
            end: self.now(),
            thread: THREAD.with(|t| *t),
            session,
            function: f as usize,
            rv,
        };
        if let Ok(mut calls) = trace.calls.lock() {
            calls.0.push(call);
        }
    }

    fn write_trace(&self) {
        let Some(trace) = &self.trace else {
            return;
        };
        let Ok(mut calls) = trace.calls.lock() else {
            return;
        };
        let mut text = String::with_capacity(calls.0.len() * 48);
        for c in calls.0.drain(..) {
            text.push_str(&format!(
                "{} {} {} {} {} 0x{:x}\n",
                c.start, c.end, c.thread, c.session, NAMES[c.function], c.rv
            ));
        }
        let started = std::mem::replace(&mut calls.1, true);
        let file = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(started)
            .truncate(!started)
            .open(&trace.path);
        let written = file.and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()));
        if let Err(e) = written {
            eprintln!(
                "hsmkey-p11shim: cannot write the trace to {}: {e}",
                trace.path
            );
        }
    }

    fn opened(&self, session: CK_SESSION_HANDLE) {
        if let Ok(mut opened) = self.opened.lock() {
            opened.push(session);
        }
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

/// The name of a function the shim can pause (the session argument only
/// marks it).
macro_rules! name_of {
    ($name:ident $session:ident) => {
        stringify!($name)
    };
}

macro_rules! shims {
    ($($name:ident($($a:ident: $t:ty),*) $([$session:ident])? $(=> $opened:ident)?;)*) => {
        /// Every forwarded function, in function-list order.
        #[allow(non_camel_case_types, clippy::upper_case_acronyms)]
        #[derive(Clone, Copy)]
        enum Func { $($name,)* }

        /// Names of the forwarded functions, indexed like [`Func`].
        pub const NAMES: &[&str] = &[$(stringify!($name)),*];

        /// The functions HSMKEY_SHIM_PAUSE can hold (a session first).
        pub const PAUSABLE: &[&str] = &[$($(name_of!($name $session),)?)*];

        #[allow(non_snake_case, clippy::too_many_arguments)]
        mod forward {
            use super::*;
            $(
                pub(super) unsafe extern "C" fn $name($($a: $t),*) -> CK_RV {
                    let Some(st) = state() else {
                        return CKR_GENERAL_ERROR;
                    };
                    let start = st.now();
                    #[allow(unused_mut, unused_assignments)]
                    let mut session: CK_SESSION_HANDLE = 0;
                    $(session = $session;)?
                    if let Some(rv) = st.before(Func::$name) {
                        st.traced(Func::$name, start, session, rv);
                        return rv;
                    }
                    $(st.maybe_pause(Func::$name, $session);)?
                    let rv = match st.real().$name {
                        // SAFETY: the arguments come unchanged from the caller,
                        // who owes the real module what it owes any module.
                        Some(f) => unsafe { f($($a),*) },
                        None => CKR_FUNCTION_NOT_SUPPORTED,
                    };
                    $(
                        if rv == CKR_OK && !$opened.is_null() {
                            // SAFETY: the module wrote the new session's
                            // handle through this out-pointer, as it returned OK.
                            st.opened(unsafe { *$opened });
                        }
                    )?
                    st.traced(Func::$name, start, session, rv);
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
        st.write_trace();
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
    C_InitPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG) [a1];
    C_SetPIN(a1: CK_SESSION_HANDLE, a2: *mut CK_UTF8CHAR, a3: CK_ULONG, a4: *mut CK_UTF8CHAR, a5: CK_ULONG) [a1];
    C_OpenSession(a1: CK_SLOT_ID, a2: CK_FLAGS, a3: *mut c_void, a4: CK_NOTIFY, a5: *mut CK_SESSION_HANDLE) => a5;
    C_CloseSession(a1: CK_SESSION_HANDLE) [a1];
    C_CloseAllSessions(a1: CK_SLOT_ID);
    C_GetSessionInfo(a1: CK_SESSION_HANDLE, a2: *mut CK_SESSION_INFO) [a1];
    C_GetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG) [a1];
    C_SetOperationState(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: CK_OBJECT_HANDLE, a5: CK_OBJECT_HANDLE) [a1];
    C_Login(a1: CK_SESSION_HANDLE, a2: CK_USER_TYPE, a3: *mut CK_UTF8CHAR, a4: CK_ULONG) [a1];
    C_Logout(a1: CK_SESSION_HANDLE) [a1];
    C_CreateObject(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG, a4: *mut CK_OBJECT_HANDLE) [a1];
    C_CopyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE) [a1];
    C_DestroyObject(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE) [a1];
    C_GetObjectSize(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ULONG) [a1];
    C_GetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG) [a1];
    C_SetAttributeValue(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG) [a1];
    C_FindObjectsInit(a1: CK_SESSION_HANDLE, a2: *mut CK_ATTRIBUTE, a3: CK_ULONG) [a1];
    C_FindObjects(a1: CK_SESSION_HANDLE, a2: *mut CK_OBJECT_HANDLE, a3: CK_ULONG, a4: *mut CK_ULONG) [a1];
    C_FindObjectsFinal(a1: CK_SESSION_HANDLE) [a1];
    C_EncryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_Encrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_EncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_EncryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG) [a1];
    C_DecryptInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_Decrypt(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DecryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DecryptFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG) [a1];
    C_DigestInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM) [a1];
    C_Digest(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_DigestKey(a1: CK_SESSION_HANDLE, a2: CK_OBJECT_HANDLE) [a1];
    C_DigestFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG) [a1];
    C_SignInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_Sign(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_SignUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_SignFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: *mut CK_ULONG) [a1];
    C_SignRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_SignRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_VerifyInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_Verify(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: CK_ULONG) [a1];
    C_VerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_VerifyFinal(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_VerifyRecoverInit(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE) [a1];
    C_VerifyRecover(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DigestEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DecryptDigestUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_SignEncryptUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_DecryptVerifyUpdate(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG, a4: *mut CK_BYTE, a5: *mut CK_ULONG) [a1];
    C_GenerateKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_OBJECT_HANDLE) [a1];
    C_GenerateKeyPair(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: *mut CK_ATTRIBUTE, a4: CK_ULONG, a5: *mut CK_ATTRIBUTE, a6: CK_ULONG, a7: *mut CK_OBJECT_HANDLE, a8: *mut CK_OBJECT_HANDLE) [a1];
    C_WrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: CK_OBJECT_HANDLE, a5: *mut CK_BYTE, a6: *mut CK_ULONG) [a1];
    C_UnwrapKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_BYTE, a5: CK_ULONG, a6: *mut CK_ATTRIBUTE, a7: CK_ULONG, a8: *mut CK_OBJECT_HANDLE) [a1];
    C_DeriveKey(a1: CK_SESSION_HANDLE, a2: *mut CK_MECHANISM, a3: CK_OBJECT_HANDLE, a4: *mut CK_ATTRIBUTE, a5: CK_ULONG, a6: *mut CK_OBJECT_HANDLE) [a1];
    C_SeedRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_GenerateRandom(a1: CK_SESSION_HANDLE, a2: *mut CK_BYTE, a3: CK_ULONG) [a1];
    C_GetFunctionStatus(a1: CK_SESSION_HANDLE) [a1];
    C_CancelFunction(a1: CK_SESSION_HANDLE) [a1];
    C_WaitForSlotEvent(a1: CK_FLAGS, a2: *mut CK_SLOT_ID, a3: *mut c_void);
}
