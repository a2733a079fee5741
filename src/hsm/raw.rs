//! The only `unsafe` code in hsmkey: direct PKCS#11 calls that cryptoki 0.12
//! cannot make safely.
//!
//! Why this exists (docs/TOKENS.md and cryptoki 0.12's limits):
//! - cryptoki has no safe name for CKM_AES_KEY_WRAP_KWP (0x210B),
//!   CKM_AES_KEY_WRAP_PKCS7 (0x210C) or CKM_RSA_AES_KEY_WRAP (0x1054), and
//!   `MechanismType` cannot be built from a number below CKM_VENDOR_DEFINED;
//! - `Session::wrap_key` returns the buffer sized by the size query rather than
//!   the length the second call reports, so tokens that over-report (NSS) give
//!   blobs with trailing zeros;
//! - cryptoki's attribute reads, wraps and single-part operations each make a
//!   size query first: a round trip per key that a network HSM pays for, which
//!   offering the buffers up front saves;
//! - NSS softokn needs a configuration string in C_Initialize's pReserved.
//!
//! The module is opened a second time with `dlopen`, which returns the handle
//! of the copy cryptoki already loaded, so the function list is the same one and
//! session and object handles from cryptoki are valid here.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::ptr;

use cryptoki::context::{CInitializeArgs, CInitializeFlags};
use cryptoki::error::{Rv, RvError};
use cryptoki::object::{Attribute, AttributeType};
use cryptoki_sys::{
    CKA_COEFFICIENT, CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_PRIME_1, CKA_PRIME_2,
    CKA_PRIVATE_EXPONENT, CKA_UNWRAP_TEMPLATE, CKA_VALUE, CKR_OK, CK_ATTRIBUTE, CK_ATTRIBUTE_TYPE,
    CK_FUNCTION_LIST, CK_MECHANISM, CK_MECHANISM_INFO, CK_OBJECT_HANDLE, CK_RV, CK_ULONG,
    CK_UNAVAILABLE_INFORMATION,
};

/// The first output buffer C_WrapKey gets: PKCS#8 of an RSA-4096 key under
/// RFC 5649 takes about 2.4 KiB.
const WRAP_BUFFER: usize = 4096;

/// The buffer [`RawModule::get_attributes_once`] offers a variable-length
/// attribute: enough for the values hsmkey's keys carry (an RSA-8192
/// modulus, a P-521 point, labels and ids of up to 256 bytes). A longer
/// value is read again the two-call way; a bigger buffer for every key is
/// host work (zeroing, copying) ten thousand times over.
fn attribute_buffer(kind: AttributeType) -> usize {
    match kind {
        AttributeType::Modulus | AttributeType::PublicExponent => 1024,
        AttributeType::EcParams | AttributeType::EcPoint => 160,
        AttributeType::CheckValue => 32,
        _ => 256,
    }
}

/// The largest wrapped key accepted (PKCS#8 of an RSA-16384 key is about
/// 10 KiB).
const WRAP_MAX: usize = 1 << 20;

/// The largest output [`RawModule::one_shot`] accepts (its outputs are
/// check blocks and MACs of at most 64 bytes).
const ONE_SHOT_MAX: usize = 4096;

/// Attributes that hold secret key material: never read, whatever a caller
/// asks (docs/SECURITY.md, invariant 1).
const NEVER_READ: [CK_ATTRIBUTE_TYPE; 7] = [
    CKA_VALUE,
    CKA_PRIVATE_EXPONENT,
    CKA_PRIME_1,
    CKA_PRIME_2,
    CKA_EXPONENT_1,
    CKA_EXPONENT_2,
    CKA_COEFFICIENT,
];

/// A raw view of the module's function list.
pub struct RawModule {
    // Kept so the library stays mapped as long as the function list is used.
    _library: libloading::Library,
    functions: *const CK_FUNCTION_LIST,
}

// SAFETY: the function list is an immutable table of function pointers owned
// by the library; PKCS#11 modules initialized with CKF_OS_LOCKING_OK are
// required to be callable from any thread.
unsafe impl Send for RawModule {}
// SAFETY: as above; we never write through the pointer.
unsafe impl Sync for RawModule {}

/// The single-part operations [`RawModule::one_shot`] makes.
#[derive(Debug, Clone, Copy)]
pub enum OneShot {
    Encrypt,
    Sign,
}

/// Mechanism information as the token reports it.
#[derive(Debug, Clone, Copy)]
pub struct RawMechanismInfo {
    pub min_key_size: u64,
    pub max_key_size: u64,
    pub flags: u64,
}

/// A mechanism for a raw call: a bare number (for those cryptoki cannot name)
/// or a cryptoki mechanism with its parameters, borrowed for the call.
pub enum RawMechanism<'a> {
    Number(u64),
    Cryptoki(&'a cryptoki::mechanism::Mechanism<'a>),
}

impl RawMechanism<'_> {
    fn to_ck(&self) -> CK_MECHANISM {
        match self {
            RawMechanism::Number(n) => CK_MECHANISM {
                mechanism: *n as _,
                pParameter: ptr::null_mut(),
                ulParameterLen: 0,
            },
            // The parameter block stays owned by the borrowed Mechanism, which
            // outlives the call.
            RawMechanism::Cryptoki(m) => CK_MECHANISM::from(*m),
        }
    }
}

/// Make a call that writes into an output buffer (`call(buffer, length)`),
/// starting with `capacity` bytes and growing while the token answers
/// CKR_BUFFER_TOO_SMALL, to at most `max` bytes (a length beyond it is not
/// believed). Returns exactly the bytes the token says it wrote.
fn grow_output(
    capacity: usize,
    max: usize,
    mut call: impl FnMut(*mut u8, &mut CK_ULONG) -> CK_RV,
) -> Result<Vec<u8>, RvError> {
    let mut capacity = capacity;
    for _ in 0..4 {
        let mut out = vec![0u8; capacity];
        let mut written: CK_ULONG = capacity as CK_ULONG;
        match check(call(out.as_mut_ptr(), &mut written)) {
            Ok(()) => {
                out.truncate((written as usize).min(capacity));
                return Ok(out);
            }
            Err(RvError::BufferTooSmall) => {
                capacity = (written as usize).max(capacity * 2);
                if capacity > max {
                    return Err(RvError::GeneralError);
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(RvError::BufferTooSmall)
}

fn check(rv: CK_RV) -> Result<(), RvError> {
    match Rv::from(rv) {
        Rv::Ok => Ok(()),
        Rv::Error(e) => Err(e),
    }
}

impl RawModule {
    /// Open the module's function list. `path` must be the same library that
    /// cryptoki loaded.
    pub fn open(path: &str) -> Result<Self, String> {
        // SAFETY: loading a PKCS#11 module runs its initializers; that is the
        // same library cryptoki has already loaded, so nothing new runs.
        let library = unsafe { libloading::Library::new(path) }.map_err(|e| e.to_string())?;
        type GetFunctionList = unsafe extern "C" fn(*mut *mut CK_FUNCTION_LIST) -> CK_RV;
        // SAFETY: C_GetFunctionList has this signature in every PKCS#11 version.
        let get: libloading::Symbol<GetFunctionList> =
            unsafe { library.get(b"C_GetFunctionList\0") }.map_err(|e| e.to_string())?;
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: `list` is a valid out-pointer for the duration of the call.
        let rv = unsafe { get(&mut list) };
        if rv != CKR_OK || list.is_null() {
            return Err(format!("C_GetFunctionList returned 0x{rv:08X}"));
        }
        Ok(RawModule {
            _library: library,
            functions: list,
        })
    }

    fn functions(&self) -> &CK_FUNCTION_LIST {
        // SAFETY: checked non-null in `open`; the table lives as long as the
        // library, which `self` keeps loaded.
        unsafe { &*self.functions }
    }

    /// C_Finalize, for a module initialized again right after (cryptoki's
    /// own finalize consumes the context, which the process keeps).
    pub fn finalize(&self) -> Result<(), RvError> {
        let f = self
            .functions()
            .C_Finalize
            .ok_or(RvError::FunctionNotSupported)?;
        // SAFETY: C_Finalize takes NULL_PTR as its only argument.
        check(unsafe { f(ptr::null_mut()) })
    }

    /// C_GetMechanismInfo for any mechanism number. `Ok(None)` when the token
    /// says the mechanism is invalid.
    // CK_ULONG is u64 here but 32 bits on Windows: keep the conversions.
    #[allow(clippy::useless_conversion)]
    pub fn mechanism_info(
        &self,
        slot: u64,
        mechanism: u64,
    ) -> Result<Option<RawMechanismInfo>, RvError> {
        let f = self
            .functions()
            .C_GetMechanismInfo
            .ok_or(RvError::FunctionNotSupported)?;
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        // SAFETY: `info` is a valid out-pointer for the call.
        let rv = unsafe { f(slot as _, mechanism as _, &mut info) };
        match check(rv) {
            Ok(()) => Ok(Some(RawMechanismInfo {
                min_key_size: u64::from(info.ulMinKeySize),
                max_key_size: u64::from(info.ulMaxKeySize),
                flags: u64::from(info.flags),
            })),
            Err(RvError::MechanismInvalid) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// C_WrapKey returning exactly the bytes the token wrote (the length the
    /// token reports for this call, never a size query's upper bound).
    pub fn wrap_key(
        &self,
        session: u64,
        mechanism: &RawMechanism<'_>,
        wrapping_key: u64,
        key: u64,
    ) -> Result<Vec<u8>, RvError> {
        let f = self
            .functions()
            .C_WrapKey
            .ok_or(RvError::FunctionNotSupported)?;
        let mut mech = mechanism.to_ck();
        // No size query first: a buffer that fits any key this tool wraps
        // saves a round trip per key on a network HSM. A token that finds it
        // too small says so and gets a bigger one; NSS's size query for
        // 0x210B also under-reports (it leaves out the padding), which the
        // same loop absorbs.
        grow_output(WRAP_BUFFER, WRAP_MAX, |out, written| {
            // SAFETY: `out` has `*written` bytes, which is what we tell the
            // token; `mech` and its parameter outlive the call.
            unsafe {
                f(
                    session as _,
                    &mut mech,
                    wrapping_key as CK_OBJECT_HANDLE,
                    key as CK_OBJECT_HANDLE,
                    out,
                    written,
                )
            }
        })
    }

    /// C_GetAttributeValue in one call instead of cryptoki's two (a size query,
    /// then the values): every attribute gets a buffer of its fixed size or
    /// [`attribute_buffer`] bytes. Attributes the object does not have, or
    /// keeps secret, are left out, as cryptoki does. `Ok(None)` when a value
    /// did not fit (CKR_BUFFER_TOO_SMALL): the caller reads the usual way.
    /// The caller must not ask for CKA_VALUE (docs/SECURITY.md, invariant 1).
    pub fn get_attributes_once(
        &self,
        session: u64,
        object: u64,
        types: &[AttributeType],
    ) -> Result<Option<Vec<Attribute>>, RvError> {
        if types
            .iter()
            .any(|t| NEVER_READ.contains(&CK_ATTRIBUTE_TYPE::from(*t)))
        {
            return Err(RvError::ArgumentsBad);
        }
        let f = self
            .functions()
            .C_GetAttributeValue
            .ok_or(RvError::FunctionNotSupported)?;
        // One allocation for every value: the attribute read is made once
        // per key, so per-attribute buffers are per-key allocations.
        let sizes: Vec<usize> = types
            .iter()
            .map(|t| t.fixed_size().unwrap_or_else(|| attribute_buffer(*t)))
            .collect();
        let mut buffer = vec![0u8; sizes.iter().sum()];
        let mut template: Vec<CK_ATTRIBUTE> = Vec::with_capacity(types.len());
        let mut rest: &mut [u8] = &mut buffer;
        for (t, size) in types.iter().zip(&sizes) {
            let (value, tail) = rest.split_at_mut(*size);
            template.push(CK_ATTRIBUTE {
                type_: (*t).into(),
                pValue: value.as_mut_ptr().cast(),
                ulValueLen: *size as CK_ULONG,
            });
            rest = tail;
        }
        // SAFETY: every pValue points to its own part of `buffer`, of
        // ulValueLen bytes; `buffer` is not touched again until the
        // conversions below are done with the template.
        let rv = unsafe {
            f(
                session as _,
                object as CK_OBJECT_HANDLE,
                template.as_mut_ptr(),
                template.len() as CK_ULONG,
            )
        };
        match check(rv) {
            Ok(()) | Err(RvError::AttributeSensitive) | Err(RvError::AttributeTypeInvalid) => {}
            Err(RvError::BufferTooSmall) => return Ok(None),
            Err(e) => return Err(e),
        }
        let mut out = Vec::with_capacity(types.len());
        for ((attr, size), kind) in template.iter().zip(&sizes).zip(types) {
            if attr.ulValueLen == CK_UNAVAILABLE_INFORMATION {
                continue;
            }
            let variable = kind.fixed_size().is_none();
            if attr.ulValueLen as usize > *size || (variable && attr.ulValueLen as usize == *size) {
                // A token that reports the length it needed instead of
                // CKR_BUFFER_TOO_SMALL, or a value that filled the whole
                // buffer (it may have been cut, or never written).
                return Ok(None);
            }
            out.push(Attribute::try_from(*attr).map_err(|_| RvError::GeneralError)?);
        }
        Ok(Some(out))
    }

    /// C_EncryptInit + C_Encrypt, or C_SignInit + C_Sign, with an output
    /// buffer of `capacity` bytes offered at once: two calls where cryptoki
    /// makes three (its size query). A token that finds the buffer too small
    /// keeps the operation open and says what it needs; the call is repeated.
    pub fn one_shot(
        &self,
        session: u64,
        op: OneShot,
        mechanism: &RawMechanism<'_>,
        key: u64,
        data: &[u8],
        capacity: usize,
    ) -> Result<Vec<u8>, RvError> {
        let list = self.functions();
        let (init, run) = match op {
            OneShot::Encrypt => (list.C_EncryptInit, list.C_Encrypt),
            OneShot::Sign => (list.C_SignInit, list.C_Sign),
        };
        let init = init.ok_or(RvError::FunctionNotSupported)?;
        let run = run.ok_or(RvError::FunctionNotSupported)?;
        let mut mech = mechanism.to_ck();
        // SAFETY: `mech` and its parameter outlive the call.
        check(unsafe { init(session as _, &mut mech, key as CK_OBJECT_HANDLE) })?;
        let mut input = data.to_vec();
        // On CKR_BUFFER_TOO_SMALL the operation stays active and the next
        // call completes it.
        grow_output(capacity, ONE_SHOT_MAX, |out, written| {
            // SAFETY: `input` holds `input.len()` bytes (C_Encrypt and C_Sign
            // do not write to it), `out` holds `*written` bytes.
            unsafe {
                run(
                    session as _,
                    input.as_mut_ptr(),
                    input.len() as CK_ULONG,
                    out,
                    written,
                )
            }
        })
    }

    /// C_UnwrapKey with any mechanism number.
    pub fn unwrap_key(
        &self,
        session: u64,
        mechanism: &RawMechanism<'_>,
        unwrapping_key: u64,
        wrapped: &[u8],
        template: &[Attribute],
    ) -> Result<u64, RvError> {
        self.unwrap_key_with_unwrap_template(
            session,
            mechanism,
            unwrapping_key,
            wrapped,
            template,
            None,
        )
    }

    /// C_UnwrapKey whose new key gets a CKA_UNWRAP_TEMPLATE: how a restored
    /// KEK keeps the protection `key generate --kek` gave it.
    pub fn unwrap_key_with_unwrap_template(
        &self,
        session: u64,
        mechanism: &RawMechanism<'_>,
        unwrapping_key: u64,
        wrapped: &[u8],
        template: &[Attribute],
        unwrap_template: Option<&[Attribute]>,
    ) -> Result<u64, RvError> {
        let f = self
            .functions()
            .C_UnwrapKey
            .ok_or(RvError::FunctionNotSupported)?;
        let mut mech = mechanism.to_ck();
        let mut inner: Vec<CK_ATTRIBUTE> = unwrap_template
            .unwrap_or_default()
            .iter()
            .map(CK_ATTRIBUTE::from)
            .collect();
        let mut attrs: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        if unwrap_template.is_some() {
            // First: SoftHSM applies the template in order and refuses to set
            // anything after CKA_MODIFIABLE=false on an unwrapped key.
            attrs.insert(
                0,
                CK_ATTRIBUTE {
                    type_: CKA_UNWRAP_TEMPLATE,
                    pValue: inner.as_mut_ptr() as *mut _,
                    ulValueLen: (inner.len() * std::mem::size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
                },
            );
        }
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: every pointer refers to memory that outlives the call
        // (`attrs`, `inner` and the templates they borrow from); the token
        // only reads them.
        let rv = unsafe {
            f(
                session as _,
                &mut mech,
                unwrapping_key as CK_OBJECT_HANDLE,
                wrapped.as_ptr() as *mut _,
                wrapped.len() as CK_ULONG,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
                &mut handle,
            )
        };
        check(rv)?;
        Ok(handle as u64)
    }
}

impl RawModule {
    /// C_GenerateKey with a CKA_UNWRAP_TEMPLATE, which cryptoki 0.12 cannot
    /// express (it has no attribute-array attributes). Keys unwrapped under
    /// the new key must then match `unwrap_template`: this is what stops a
    /// user from unwrapping a blob as a non-sensitive key (docs/KEYS.md).
    pub fn generate_key_with_unwrap_template(
        &self,
        session: u64,
        mechanism: &RawMechanism<'_>,
        template: &[Attribute],
        unwrap_template: &[Attribute],
    ) -> Result<u64, RvError> {
        let f = self
            .functions()
            .C_GenerateKey
            .ok_or(RvError::FunctionNotSupported)?;
        let mut mech = mechanism.to_ck();
        let mut inner: Vec<CK_ATTRIBUTE> = unwrap_template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut attrs: Vec<CK_ATTRIBUTE> = template.iter().map(CK_ATTRIBUTE::from).collect();
        attrs.push(CK_ATTRIBUTE {
            type_: CKA_UNWRAP_TEMPLATE,
            pValue: inner.as_mut_ptr() as *mut _,
            ulValueLen: (inner.len() * std::mem::size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
        });
        let mut handle: CK_OBJECT_HANDLE = 0;
        // SAFETY: `attrs` and `inner` (which the array attribute points to)
        // and the values they borrow from the templates outlive the call; the
        // token only reads them.
        let rv = unsafe {
            f(
                session as _,
                &mut mech,
                attrs.as_mut_ptr(),
                attrs.len() as CK_ULONG,
                &mut handle,
            )
        };
        check(rv)?;
        Ok(handle as u64)
    }
}

impl RawModule {
    /// C_GenerateKeyPair whose private key gets a CKA_UNWRAP_TEMPLATE (cryptoki
    /// 0.12 cannot express it): keys unwrapped with the private key must match it.
    // CK_OBJECT_HANDLE is u64 here but 32 bits on Windows: keep the conversions.
    #[allow(clippy::useless_conversion)]
    pub fn generate_key_pair_with_unwrap_template(
        &self,
        session: u64,
        mechanism: &RawMechanism<'_>,
        public_template: &[Attribute],
        private_template: &[Attribute],
        unwrap_template: &[Attribute],
    ) -> Result<(u64, u64), RvError> {
        let f = self
            .functions()
            .C_GenerateKeyPair
            .ok_or(RvError::FunctionNotSupported)?;
        let mut mech = mechanism.to_ck();
        let mut inner: Vec<CK_ATTRIBUTE> = unwrap_template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut public: Vec<CK_ATTRIBUTE> =
            public_template.iter().map(CK_ATTRIBUTE::from).collect();
        let mut private: Vec<CK_ATTRIBUTE> =
            private_template.iter().map(CK_ATTRIBUTE::from).collect();
        // First, as for unwrap: SoftHSM applies attributes in order.
        private.insert(
            0,
            CK_ATTRIBUTE {
                type_: CKA_UNWRAP_TEMPLATE,
                pValue: inner.as_mut_ptr() as *mut _,
                ulValueLen: (inner.len() * std::mem::size_of::<CK_ATTRIBUTE>()) as CK_ULONG,
            },
        );
        let (mut pub_handle, mut priv_handle): (CK_OBJECT_HANDLE, CK_OBJECT_HANDLE) = (0, 0);
        // SAFETY: the three attribute vectors, the array attribute's target
        // and the borrowed template values outlive the call; the handles are
        // valid out-pointers.
        let rv = unsafe {
            f(
                session as _,
                &mut mech,
                public.as_mut_ptr(),
                public.len() as CK_ULONG,
                private.as_mut_ptr(),
                private.len() as CK_ULONG,
                &mut pub_handle,
                &mut priv_handle,
            )
        };
        check(rv)?;
        Ok((u64::from(pub_handle), u64::from(priv_handle)))
    }
}

/// Initialize a cryptoki context, passing `module_args` (NSS's configuration
/// string) through C_Initialize's pReserved when given.
pub fn initialize(
    pkcs11: &cryptoki::context::Pkcs11,
    module_args: Option<&str>,
) -> Result<(), cryptoki::error::Error> {
    let flags = CInitializeFlags::OS_LOCKING_OK;
    match module_args {
        None => pkcs11.initialize(CInitializeArgs::new(flags)),
        Some(args) => {
            let c_args = CString::new(args).map_err(cryptoki::error::Error::NulError)?;
            let reserved = std::ptr::NonNull::new(c_args.as_ptr() as *mut std::ffi::c_void)
                .ok_or(cryptoki::error::Error::NullFunctionPointer)?;
            // SAFETY: pReserved points to a NUL-terminated string that lives
            // until C_Initialize returns (`c_args` is dropped after the call);
            // modules that take it (NSS softokn) copy what they need.
            let init = unsafe { CInitializeArgs::new_with_reserved(flags, reserved) };
            pkcs11.initialize(init)
        }
    }
}

/// Turn a handle returned by [`RawModule::unwrap_key`] into cryptoki's type.
pub fn object_handle(handle: u64) -> cryptoki::object::ObjectHandle {
    // SAFETY: only called with handles the token itself just returned on a
    // session of this module; an invalid handle would only make the token
    // answer CKR_OBJECT_HANDLE_INVALID, not cause memory unsafety.
    unsafe { cryptoki::object::ObjectHandle::new_from_raw(handle as _) }
}
