//! BPF_MAP_UPDATE_BATCH and BPF_MAP_LOOKUP_BATCH, which aya does not wrap: one syscall per
//! chunk of elements instead of one per element. Loading a million entries one syscall at a
//! time spends more time entering the kernel than inserting. Where a kernel has no batch
//! operation for a map type (Debian 11's 5.10: none for LPM tries, nor lookups in per-CPU
//! arrays), both fall back to one syscall an element.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// Elements per syscall: large enough to amortise the syscall, small enough that the kernel
/// never holds a map's lock for long.
const CHUNK: usize = 16_384;

// From enum bpf_cmd in linux/bpf.h.
const BPF_MAP_LOOKUP_ELEM: libc::c_int = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_int = 2;
const BPF_MAP_LOOKUP_BATCH: libc::c_int = 24;
const BPF_MAP_UPDATE_BATCH: libc::c_int = 26;
/// The kernel's ENOTSUPP (not in libc): what a map type without batch operations answers.
const ENOTSUPP: i32 = 524;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// The `elem` member of `union bpf_attr` (BPF_MAP_UPDATE_ELEM).
#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<A>(cmd: libc::c_int, attr: &mut A) -> io::Result<()> {
    // SAFETY: `attr` is a valid bpf_attr prefix of the size passed (BatchAttr or ElemAttr);
    // the pointers in it point at buffers the caller keeps alive, sized for what it says.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A,
            size_of::<A>() as libc::c_uint,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Writes `keys[i] -> values[i]` for every i.
pub fn update<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    assert_eq!(keys.len(), values.len(), "one value per key");
    for (keys, values) in keys.chunks(CHUNK).zip(values.chunks(CHUNK)) {
        let mut attr = BatchAttr {
            keys: keys.as_ptr() as u64,
            values: values.as_ptr() as u64,
            count: keys.len() as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        match bpf(BPF_MAP_UPDATE_BATCH, &mut attr) {
            // Refused before any element was written: the map type has no batch update.
            Err(e) if matches!(e.raw_os_error(), Some(ENOTSUPP | libc::EOPNOTSUPP)) => {
                update_each(map, keys, values)?
            }
            result => result?,
        }
    }
    Ok(())
}

/// `update` one element at a time.
fn update_each<K: aya::Pod, V: aya::Pod>(
    map: BorrowedFd<'_>,
    keys: &[K],
    values: &[V],
) -> io::Result<()> {
    for (key, value) in keys.iter().zip(values) {
        let mut attr = ElemAttr {
            map_fd: map.as_raw_fd() as u32,
            key: key as *const K as u64,
            value: value as *const V as u64,
            ..ElemAttr::default()
        };
        bpf(BPF_MAP_UPDATE_ELEM, &mut attr)?;
    }
    Ok(())
}

/// Calls `each(key, value)` for every element of an array map, in index order.
pub fn for_each_array<V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    mut each: impl FnMut(u32, &V),
) -> io::Result<()> {
    for_each_array_per_cpu(map, 1, u32::MAX, |key, values: &[V]| each(key, &values[0]))
}

/// Calls `each(key, values)` for the elements 0..=`last` of an array map, with `cpus` values
/// each: one per CPU for a per-CPU array (whose values `V`, a multiple of 8 bytes, the kernel
/// lays out back to back), one for a plain array.
pub fn for_each_array_per_cpu<V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    cpus: usize,
    last: u32,
    mut each: impl FnMut(u32, &[V]),
) -> io::Result<()> {
    let chunk = CHUNK.min(last as usize + 1);
    let mut keys = vec![0u32; chunk];
    let mut values = vec![V::default(); chunk * cpus];
    let mut left = last as usize + 1;
    let mut token = 0u32;
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const token as u64 },
            out_batch: &raw mut token as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: chunk.min(left) as u32,
            map_fd: map.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // ENOENT: the last chunk (possibly empty) has been read.
        let done = match bpf(BPF_MAP_LOOKUP_BATCH, &mut attr) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
            Err(e) if first && matches!(e.raw_os_error(), Some(ENOTSUPP | libc::EOPNOTSUPP)) => {
                return for_each_element(map, cpus, last, each);
            }
            Err(e) => return Err(e),
        };
        first = false;
        let count = attr.count as usize;
        for (key, values) in keys.iter().zip(values.chunks(cpus)).take(count) {
            each(*key, values);
        }
        left -= count;
        if done || count == 0 || left == 0 {
            return Ok(());
        }
    }
}

/// `for_each_array_per_cpu` one element a syscall, up to `last` or the array's end.
fn for_each_element<V: aya::Pod + Default>(
    map: BorrowedFd<'_>,
    cpus: usize,
    last: u32,
    mut each: impl FnMut(u32, &[V]),
) -> io::Result<()> {
    let mut values = vec![V::default(); cpus];
    for key in 0..=last {
        let mut attr = ElemAttr {
            map_fd: map.as_raw_fd() as u32,
            key: &raw const key as u64,
            value: values.as_mut_ptr() as u64,
            ..ElemAttr::default()
        };
        match bpf(BPF_MAP_LOOKUP_ELEM, &mut attr) {
            Ok(()) => each(key, &values),
            // Past the array's end.
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
