//! Who and where an image comes from: the header's descriptive fields as
//! owned Rust values.

use std::string::String;

use serde::{Deserialize, Serialize};

use crate::format::Header;

/// The vDSO the process was using. glibc caches pointers into the vDSO, so a
/// restart moves the current one to the recorded address; that only works if
/// the code there is the same, which these fields let a restart check.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VdsoIdentity {
    pub vdso_len: u64,
    pub vvar_len: u64,
    pub vvar_vclock_len: u64,
    /// crc32c of the `[vdso]` mapping's bytes.
    pub vdso_crc: u32,
}

/// Identity of the checkpointed process and of the machine it ran on.
///
/// Text fields are stored in fixed NUL-padded arrays (program 64 bytes,
/// hostname and kernel release 72, glibc version 16) and cut at a character
/// boundary when longer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub computation: u64,
    pub generation: u64,
    pub process_id: u64,
    pub virtual_pid: u32,
    pub real_pid: u32,
    pub created_unix_ns: u64,
    pub program: String,
    pub hostname: String,
    pub kernel_release: String,
    pub glibc_version: String,
    pub vdso: VdsoIdentity,
}

impl Identity {
    /// Copies the identity into a header's fields.
    pub(crate) fn fill_header(&self, h: &mut Header) {
        h.computation = self.computation;
        h.generation = self.generation;
        h.process_id = self.process_id;
        h.virtual_pid = self.virtual_pid;
        h.real_pid = self.real_pid;
        h.created_unix_ns = self.created_unix_ns;
        Header::set_text(&mut h.program, &self.program);
        Header::set_text(&mut h.hostname, &self.hostname);
        Header::set_text(&mut h.kernel_release, &self.kernel_release);
        Header::set_text(&mut h.glibc_version, &self.glibc_version);
        h.vdso_len = self.vdso.vdso_len;
        h.vvar_len = self.vdso.vvar_len;
        h.vvar_vclock_len = self.vdso.vvar_vclock_len;
        h.vdso_crc = self.vdso.vdso_crc;
    }

    /// Reads the identity out of a (validated) header. Text that isn't
    /// UTF-8 is shown with replacement characters rather than refused: it
    /// is descriptive only.
    pub fn from_header(h: &Header) -> Identity {
        let text = |f: &[u8]| String::from_utf8_lossy(Header::text(f)).into_owned();
        Identity {
            computation: h.computation,
            generation: h.generation,
            process_id: h.process_id,
            virtual_pid: h.virtual_pid,
            real_pid: h.real_pid,
            created_unix_ns: h.created_unix_ns,
            program: text(&h.program),
            hostname: text(&h.hostname),
            kernel_release: text(&h.kernel_release),
            glibc_version: text(&h.glibc_version),
            vdso: VdsoIdentity {
                vdso_len: h.vdso_len,
                vvar_len: h.vvar_len,
                vvar_vclock_len: h.vvar_vclock_len,
                vdso_crc: h.vdso_crc,
            },
        }
    }
}
