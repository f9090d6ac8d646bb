//! How the store keeps one key: a single allocation holding the key, its offset, its content
//! type and its value, ordered by the key from the largest down.

use std::borrow::Borrow;
use std::cmp::Ordering;

use super::DEFAULT_CONTENT_TYPE;

/// One stored key with everything the store keeps for it, in a single allocation ordered by
/// the key alone (descending, see [`DescendingKey`]): the key's length, the key, the offset of
/// the record that wrote it, its content type's code, then the value to the end. The numbers
/// are LEB128 varints, so a short key and an offset below 2^21 take five bytes of header in
/// all.
///
/// One allocation per key instead of a key box and a value box, and 16 bytes per key in the
/// map's nodes instead of 56: a million 16-byte keys with 100-byte values, inserted in order,
/// took 180 bytes a key instead of 252 (with glibc's allocator).
#[derive(Debug)]
pub(super) struct Slot(Box<[u8]>);

/// How a slot names its value's content type. Encoded as one varint: 0 for
/// [`DEFAULT_CONTENT_TYPE`], `2 * index + 1` for an interned type, `2 * length` for a type
/// stored in the slot itself (after the code, before the value).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ContentTypeCode<'a> {
    Default,
    Interned(u32),
    Inline(&'a str),
}

/// A slot taken apart.
pub(super) struct SlotParts<'a> {
    pub(super) key: &'a [u8],
    pub(super) offset: i64,
    pub(super) content_type: ContentTypeCode<'a>,
    pub(super) value: &'a [u8],
}

impl Slot {
    pub(super) fn new(
        key: &[u8],
        offset: i64,
        content_type: ContentTypeCode<'_>,
        value: &[u8],
    ) -> Slot {
        // Offsets below `applied_offset` (which starts at 0) are never applied: never negative.
        let offset = offset.max(0) as u64;
        let (code, inline): (u64, &[u8]) = match content_type {
            ContentTypeCode::Default => (0, &[]),
            ContentTypeCode::Interned(index) => (2 * u64::from(index) + 1, &[]),
            ContentTypeCode::Inline(name) => (2 * name.len() as u64, name.as_bytes()),
        };
        let len = varint_len(key.len() as u64)
            + key.len()
            + varint_len(offset)
            + varint_len(code)
            + inline.len()
            + value.len();
        // Exactly the capacity needed, so that `into_boxed_slice` does not reallocate.
        let mut bytes = Vec::with_capacity(len);
        put_varint(&mut bytes, key.len() as u64);
        bytes.extend_from_slice(key);
        put_varint(&mut bytes, offset);
        put_varint(&mut bytes, code);
        bytes.extend_from_slice(inline);
        bytes.extend_from_slice(value);
        debug_assert_eq!(bytes.len(), len);
        Slot(bytes.into_boxed_slice())
    }

    #[inline]
    pub(super) fn key(&self) -> &[u8] {
        // Every search compares keys, so the usual one-byte length is read without a loop.
        match self.0.first() {
            Some(&len) if len < 0x80 => &self.0[1..1 + usize::from(len)],
            _ => {
                let (len, at) = get_varint(&self.0);
                &self.0[at..at + len as usize]
            }
        }
    }

    pub(super) fn parts(&self) -> SlotParts<'_> {
        let key = self.key();
        let mut at = varint_len(key.len() as u64) + key.len();
        let (offset, used) = get_varint(&self.0[at..]);
        at += used;
        let (code, used) = get_varint(&self.0[at..]);
        at += used;
        let content_type = if code == 0 {
            ContentTypeCode::Default
        } else if code % 2 == 1 {
            ContentTypeCode::Interned((code / 2) as u32)
        } else {
            let len = (code / 2) as usize;
            let name = &self.0[at..at + len];
            at += len;
            // Written from a `&str`; the fallback is never taken.
            ContentTypeCode::Inline(std::str::from_utf8(name).unwrap_or(DEFAULT_CONTENT_TYPE))
        };
        SlotParts {
            key,
            offset: offset as i64,
            content_type,
            value: &self.0[at..],
        }
    }
}

/// A key in the order of the map: descending.
///
/// std's B-tree searches each node from its smallest key up. A key larger than every key
/// stored, as keys written in ascending order are (sequence numbers, timestamps), would be
/// compared with every key of every node on its path: ~50 comparisons per insert at a million
/// keys. In descending order it goes down the first edge of each node after one comparison:
/// ~7. Keys written in descending order get the slow path instead; random keys are no
/// different either way.
#[derive(PartialEq, Eq)]
#[repr(transparent)]
pub(super) struct DescendingKey([u8]);

impl DescendingKey {
    pub(super) fn new(key: &[u8]) -> &DescendingKey {
        // SAFETY: `DescendingKey` is a transparent wrapper of `[u8]`, so the two references
        // have the same layout and metadata.
        unsafe { &*(key as *const [u8] as *const DescendingKey) }
    }
}

impl PartialOrd for DescendingKey {
    fn partial_cmp(&self, other: &DescendingKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for DescendingKey {
    #[inline]
    fn cmp(&self, other: &DescendingKey) -> Ordering {
        other.0.cmp(&self.0)
    }
}

// A slot is its key as far as the set is concerned, so the set can be searched by key.
impl Borrow<DescendingKey> for Slot {
    fn borrow(&self) -> &DescendingKey {
        DescendingKey::new(self.key())
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Slot) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Slot {}

impl PartialOrd for Slot {
    fn partial_cmp(&self, other: &Slot) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Slot {
    #[inline]
    fn cmp(&self, other: &Slot) -> Ordering {
        DescendingKey::new(self.key()).cmp(DescendingKey::new(other.key()))
    }
}

pub(super) fn varint_len(value: u64) -> usize {
    // 7 bits a byte, at least one byte.
    (64 - (value | 1).leading_zeros() as usize).div_ceil(7)
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// The varint at the start of `bytes` and how many bytes it took.
pub(super) fn get_varint(bytes: &[u8]) -> (u64, usize) {
    let mut value = 0;
    for (i, &byte) in bytes.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte < 0x80 {
            return (value, i + 1);
        }
    }
    (value, bytes.len().min(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_every_length() {
        for value in [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            1 << 35,
            i64::MAX as u64,
            u64::MAX,
        ] {
            let mut bytes = Vec::new();
            put_varint(&mut bytes, value);
            assert_eq!(bytes.len(), varint_len(value), "{value}");
            bytes.push(0xff);
            assert_eq!(get_varint(&bytes), (value, varint_len(value)), "{value}");
        }
    }

    #[test]
    fn slots_keep_long_keys_large_offsets_and_inline_content_types() {
        let key = vec![b'k'; 20_000];
        let value = vec![b'v'; 300];
        for content_type in [
            ContentTypeCode::Default,
            ContentTypeCode::Interned(70_000),
            ContentTypeCode::Inline("text/plain; charset=utf-8"),
        ] {
            for offset in [0, 300, i64::MAX] {
                let slot = Slot::new(&key, offset, content_type, &value);
                let parts = slot.parts();
                assert_eq!(parts.key, key.as_slice());
                assert_eq!(parts.offset, offset);
                assert_eq!(parts.content_type, content_type);
                assert_eq!(parts.value, value.as_slice());
            }
        }
        let empty = Slot::new(b"", 0, ContentTypeCode::Default, b"");
        assert_eq!(empty.0.len(), 3);
        assert!(empty.parts().key.is_empty() && empty.parts().value.is_empty());
    }
}
