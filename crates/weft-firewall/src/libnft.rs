//! nftables in-process: libnftables (the library behind the `nft` command,
//! shipped with it) loaded at run time. Starting `nft` costs a fork, an
//! exec and its dynamic loading, about 2.5 ms; the same batch through the
//! library takes about 0.2 ms, which matters on the attach path where a
//! published port is one small batch (since then written over netlink
//! instead, nfnl.rs). Where the library cannot be loaded, and in a static
//! weft, weft runs the `nft` command instead (see `nft.rs`).

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::sync::{Mutex, OnceLock};

type Ctx = *mut c_void;

/// The few functions weft uses, resolved once per process.
pub(crate) struct Lib {
    ctx_new: unsafe extern "C" fn(u32) -> Ctx,
    ctx_free: unsafe extern "C" fn(Ctx),
    set_output_flags: unsafe extern "C" fn(Ctx, u32),
    buffer_output: unsafe extern "C" fn(Ctx) -> c_int,
    buffer_error: unsafe extern "C" fn(Ctx) -> c_int,
    output_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
    error_buffer: unsafe extern "C" fn(Ctx) -> *const c_char,
    run_cmd: unsafe extern "C" fn(Ctx, *const c_char) -> c_int,
}

/// `NFT_CTX_OUTPUT_JSON`: JSON output, and JSON input is accepted.
const OUTPUT_JSON: u32 = 1 << 4;

/// libnftables, if this machine has it.
pub(crate) fn lib() -> Option<&'static Lib> {
    // A static weft (how `make` builds it) cannot load a library that needs
    // libc.so: a second C library in the process crashes it. It runs nft.
    if cfg!(target_feature = "crt-static") {
        return None;
    }
    static LIB: OnceLock<Option<Lib>> = OnceLock::new();
    LIB.get_or_init(load).as_ref()
}

fn load() -> Option<Lib> {
    // SAFETY: dlopen with a constant, NUL-terminated name; the handle is
    // never closed, so symbols stay valid for the life of the process.
    let handle =
        unsafe { libc::dlopen(c"libnftables.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return None;
    }
    let sym = |name: &CStr| {
        // SAFETY: a valid handle and a NUL-terminated name.
        let p = unsafe { libc::dlsym(handle, name.as_ptr()) };
        (!p.is_null()).then_some(p)
    };
    // SAFETY: each symbol is the libnftables function of that name, whose C
    // signature (include/nftables/libnftables.h) the target type matches.
    unsafe {
        Some(Lib {
            ctx_new: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(u32) -> Ctx>(sym(
                c"nft_ctx_new",
            )?),
            ctx_free: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ctx)>(sym(
                c"nft_ctx_free",
            )?),
            set_output_flags: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ctx, u32)>(
                sym(c"nft_ctx_output_set_flags")?,
            ),
            buffer_output: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ctx) -> c_int>(
                sym(c"nft_ctx_buffer_output")?,
            ),
            buffer_error: std::mem::transmute::<*mut c_void, unsafe extern "C" fn(Ctx) -> c_int>(
                sym(c"nft_ctx_buffer_error")?,
            ),
            output_buffer: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(Ctx) -> *const c_char,
            >(sym(c"nft_ctx_get_output_buffer")?),
            error_buffer: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(Ctx) -> *const c_char,
            >(sym(c"nft_ctx_get_error_buffer")?),
            run_cmd: std::mem::transmute::<
                *mut c_void,
                unsafe extern "C" fn(Ctx, *const c_char) -> c_int,
            >(sym(c"nft_run_cmd_from_buffer")?),
        })
    }
}

impl Lib {
    /// Runs `cmd` (a JSON batch, or a command such as `list table inet
    /// weft`) in the calling thread's network namespace. Ok: what nft would
    /// print on stdout (JSON); Err: what it would print on stderr.
    pub(crate) fn run(&self, cmd: &str) -> Result<String, String> {
        let cmd = CString::new(cmd).map_err(|_| "command contains a NUL byte".to_string())?;
        // One call at a time per process: libnftables prints protocol and
        // service names through getprotobynumber()/getservbyport(), which
        // share one static buffer, so two threads listing at once could
        // read each other's answers (seen: a tcp element printed as sctp).
        static SERIAL: Mutex<()> = Mutex::new(());
        let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: the context is created, used and freed here only; the
        // buffers it returns are copied before it is freed.
        unsafe {
            let ctx = (self.ctx_new)(0);
            if ctx.is_null() {
                return Err("cannot create an nftables context".into());
            }
            (self.set_output_flags)(ctx, OUTPUT_JSON);
            (self.buffer_output)(ctx);
            (self.buffer_error)(ctx);
            let rc = (self.run_cmd)(ctx, cmd.as_ptr());
            let text = |p: *const c_char| {
                if p.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(p).to_string_lossy().into_owned()
                }
            };
            let (out, err) = (text((self.output_buffer)(ctx)), text((self.error_buffer)(ctx)));
            (self.ctx_free)(ctx);
            if rc == 0 {
                Ok(out)
            } else {
                Err(err)
            }
        }
    }
}
