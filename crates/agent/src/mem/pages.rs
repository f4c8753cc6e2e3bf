//! Which pages of a mapping hold data.
//!
//! Untouched anonymous pages are zero by definition: the kernel tells which
//! pages are present (or swapped) in bulk with the `PAGEMAP_SCAN` ioctl
//! (Linux 6.7+), falling back to large reads of `/proc/self/pagemap`.
//! Present pages that are all zeros are skipped too. Pages of file-backed
//! private mappings are all read: an absent page there means "as in the
//! file", and the file may change or be missing at restart.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

pub const PAGE: u64 = 4096;

/// Zero gaps up to this many pages are stored rather than split, so that
/// a restart maps fewer, larger runs.
const MERGE_GAP_PAGES: u64 = 4;

const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_SWAPPED: u64 = 1 << 4;
const PAGE_IS_PFNZERO: u64 = 1 << 5;
/// `_IOWR('f', 16, struct pm_scan_arg)` with a 96-byte argument.
const PAGEMAP_SCAN: u64 = 0xC060_6610;

#[repr(C)]
#[derive(Default)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

/// Finds present pages; reused across mappings to avoid reallocating.
pub struct Scanner {
    pagemap: File,
    regions: Vec<PageRegion>,
    use_scan: bool,
    entries: Vec<u64>,
}

impl Scanner {
    pub fn new() -> std::io::Result<Self> {
        Ok(Scanner {
            pagemap: File::open("/proc/self/pagemap")?,
            regions: vec![PageRegion::default(); 4096],
            use_scan: true,
            entries: vec![0; 64 * 1024],
        })
    }

    /// Ranges `[start, end)` of pages that are present or swapped.
    pub fn present(&mut self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        out.clear();
        if self.use_scan && self.scan(start, end, out).is_ok() {
            return;
        }
        self.use_scan = false;
        out.clear();
        self.read_pagemap(start, end, out);
    }

    fn scan(&mut self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) -> Result<(), ()> {
        let mut cur = start;
        while cur < end {
            let mut arg = PmScanArg {
                size: std::mem::size_of::<PmScanArg>() as u64,
                start: cur,
                end,
                vec: self.regions.as_mut_ptr() as u64,
                vec_len: self.regions.len() as u64,
                category_anyof_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED,
                return_mask: PAGE_IS_PRESENT | PAGE_IS_SWAPPED | PAGE_IS_PFNZERO,
                ..Default::default()
            };
            // PAGEMAP_SCAN reads `arg` and writes at most `vec_len`
            // regions into `self.regions`, which outlives the call.
            // SAFETY: see just above.
            let n = unsafe {
                libc::ioctl(
                    self.pagemap.as_raw_fd(),
                    PAGEMAP_SCAN as _,
                    &mut arg as *mut PmScanArg,
                )
            };
            if n < 0 {
                return Err(());
            }
            for r in &self.regions[..n as usize] {
                // The shared zero page: present, but nothing to save.
                if r.categories & (PAGE_IS_PRESENT | PAGE_IS_SWAPPED) == PAGE_IS_PRESENT
                    && r.categories & PAGE_IS_PFNZERO != 0
                {
                    continue;
                }
                push_range(out, r.start, r.end);
            }
            if arg.walk_end <= cur {
                break;
            }
            cur = arg.walk_end;
        }
        Ok(())
    }

    fn read_pagemap(&mut self, start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
        let mut page = start / PAGE;
        let last = end / PAGE;
        while page < last {
            let n = ((last - page) as usize).min(self.entries.len());
            // u64 has no invalid bit patterns; we view the buffer as
            // bytes to read pagemap entries into it.
            // SAFETY: see just above.
            let bytes = unsafe {
                std::slice::from_raw_parts_mut(self.entries.as_mut_ptr().cast::<u8>(), n * 8)
            };
            if self.pagemap.read_exact_at(bytes, page * 8).is_err() {
                // Cannot tell: treat everything as present (zero check still applies).
                push_range(out, page * PAGE, end);
                return;
            }
            for (i, &e) in self.entries[..n].iter().enumerate() {
                if e & (3 << 62) != 0 {
                    let a = (page + i as u64) * PAGE;
                    push_range(out, a, a + PAGE);
                }
            }
            page += n as u64;
        }
    }
}

fn push_range(out: &mut Vec<(u64, u64)>, s: u64, e: u64) {
    if let Some(last) = out.last_mut()
        && last.1 == s
    {
        last.1 = e;
        return;
    }
    out.push((s, e));
}

fn page_is_zero(p: &[u8]) -> bool {
    let (pre, mid, post) = {
        // SAFETY: u8 -> u64 reinterpretation of initialised memory.
        unsafe { p.align_to::<u64>() }
    };
    // Blocks of 8 words, OR-ed (vectorised), with an exit at the first
    // non-zero block: a page of data costs one block, a zero page a read.
    pre.iter().all(|&b| b == 0)
        && mid
            .chunks(8)
            .all(|c| c.iter().fold(0u64, |a, &w| a | w) == 0)
        && post.iter().all(|&b| b == 0)
}

/// Splits `[start, end)` (readable, page-aligned) into runs of non-zero
/// pages, merging short zero gaps.
///
/// # Safety
/// The range must be mapped readable and stay mapped during the call.
pub unsafe fn nonzero_runs(start: u64, end: u64, out: &mut Vec<(u64, u64)>) {
    let mut run: Option<(u64, u64)> = None;
    let mut a = start;
    while a < end {
        // SAFETY: per the contract, every page in the range is readable.
        let page = unsafe { std::slice::from_raw_parts(a as *const u8, PAGE as usize) };
        if !page_is_zero(page) {
            run = match run {
                Some((s, e)) if a - e <= MERGE_GAP_PAGES * PAGE => Some((s, a + PAGE)),
                Some(r) => {
                    out.push(r);
                    Some((a, a + PAGE))
                }
                None => Some((a, a + PAGE)),
            };
        }
        a += PAGE;
    }
    if let Some(r) = run {
        out.push(r);
    }
}

/// Whether the page at `addr` can be read: through the kernel, which
/// answers EFAULT where touching the page ourselves would raise SIGBUS (a
/// file mapping past its file's end).
fn page_readable(addr: u64) -> bool {
    let mut b = [0u8; 1];
    let local = libc::iovec {
        iov_base: b.as_mut_ptr().cast(),
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: reads one byte of our own memory into a local buffer.
    unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) == 1 }
}

/// Length of the readable prefix of `[start, end)` (page-aligned), found
/// by binary search: a file mapping is readable up to its file's end.
pub fn readable_len(start: u64, end: u64) -> u64 {
    let pages = (end - start) / PAGE;
    if pages == 0 || page_readable(end - PAGE) {
        return end - start;
    }
    if !page_readable(start) {
        return 0;
    }
    // Page `lo` is readable, page `hi` is not.
    let (mut lo, mut hi) = (0u64, pages - 1);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if page_readable(start + mid * PAGE) {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (lo + 1) * PAGE
}

impl Scanner {
    pub fn raw_fd(&self) -> i32 {
        self.pagemap.as_raw_fd()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn finds_present_and_nonzero_pages() {
        let len = 64 * PAGE as usize;
        let mut buf = vec![0u8; len + PAGE as usize];
        let base = (buf.as_mut_ptr() as u64 + PAGE - 1) & !(PAGE - 1);
        // SAFETY: base..base+len lies inside buf.
        let s = unsafe { std::slice::from_raw_parts_mut(base as *mut u8, len) };
        s[0] = 1;
        s[10 * PAGE as usize + 5] = 2;
        s[11 * PAGE as usize] = 3;
        let mut runs = Vec::new();
        // SAFETY: the range is inside `buf`.
        unsafe { nonzero_runs(base, base + len as u64, &mut runs) };
        assert_eq!(
            runs,
            vec![(base, base + PAGE), (base + 10 * PAGE, base + 12 * PAGE)]
        );

        let mut sc = Scanner::new().unwrap();
        let mut present = Vec::new();
        sc.present(base, base + len as u64, &mut present);
        assert!(present.iter().any(|&(a, b)| a <= base && base < b));
    }
}
