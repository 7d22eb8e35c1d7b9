#!/usr/bin/env python3
"""Independent reference implementation of tgferry vault format v1, and the
generator of the test vectors beside it.

Written from docs/format.md alone, on Python's `cryptography` package (>= 44,
for Argon2id) and the `blake3` package (`pip install blake3`, for keyed BLAKE3),
sharing no code with the Rust implementation beyond BLAKE3 itself (the `blake3`
package binds the upstream Rust crate tgferry also uses; the BLAKE3 spec's own test
vector pins that primitive in src/vault/content_id.rs). The Rust harness
(tests/vault_vectors.rs) checks that its own output matches every vector this
script wrote, so two independent implementations agree on every byte. For packs
(docs/format.md, "Packs") the script also decodes every object from its byte
range of the pack, and checks that each faulty range fails as its vector says,
with a part reader of its own.

CI runs it with `--check` (.ci/run): everything is computed again and compared
with the files on disk, nothing is written, and any difference (or a file the
script would not write) fails. Offline: it needs only the two packages above.

To regenerate (only ever needed when adding vectors; existing vectors must never
change, the format is forever (content ids changed once, before the first
release, from HMAC-SHA256 to keyed BLAKE3)):

    python3 tests/testdata/vault/reference_impl.py
"""

import hashlib
import json
import os
import sys

import blake3
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

HERE = os.path.dirname(os.path.abspath(__file__))
SEG = 1 << 20  # SEGMENT_SIZE
TAG = 16
MIB = 1 << 20


# --- the format -------------------------------------------------------------

def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def segment_count(size):
    return max(1, -(-size // SEG))


def seal_segments(key, prefix, plaintext, first, end, n):
    """STREAM segments first..end of a plaintext with n segments in all."""
    aead = AESGCM(key)
    out = b""
    for i in range(first, end):
        nonce = prefix + i.to_bytes(4, "big") + bytes([1 if i == n - 1 else 0])
        out += aead.encrypt(nonce, plaintext[i * SEG:(i + 1) * SEG], None)
    return out


def part_blobs(master, salt, prefix, size, part_size, plaintext):
    assert part_size > 0 and part_size % SEG == 0 and len(plaintext) == size
    key = hkdf(salt, master, b"tgferry v1 object")
    n = segment_count(size)
    per_part = part_size // SEG
    parts = max(1, -(-size // part_size))
    blobs = []
    for k in range(parts):
        first = k * per_part
        end = min(first + per_part, n)
        header = b"TGFP" + bytes([1]) + salt + prefix + first.to_bytes(4, "big")
        blobs.append(header + seal_segments(key, prefix, plaintext, first, end, n))
    return blobs


def read_part(master, salt, prefix, size, part_size, k, blob):
    """Reads part k of an object from blob as docs/format.md, "Reading part k",
    says, in its order. Returns (outcome, plaintext): outcome in the vectors'
    `expect:` notation, plaintext only when it is "ok"."""
    n = segment_count(size)
    per_part = part_size // SEG
    first = k * per_part
    end = min(first + per_part, n)
    expected_len = 48 + sum(len(range(i * SEG, min((i + 1) * SEG, size))) + TAG
                            for i in range(first, end))
    if len(blob) < 48:
        return ("damaged bad_magic" if blob[:4] != b"TGFP"[:len(blob)]
                else "damaged truncated expected=48 found=%d" % len(blob)), None
    if blob[:4] != b"TGFP":
        return "damaged bad_magic", None
    if blob[4] != 1:
        return "unsupported_version found=%d" % blob[4], None
    if blob[5:37] != salt or blob[37:44] != prefix:
        return "damaged wrong_object", None
    found = int.from_bytes(blob[44:48], "big")
    if found != first:
        return "damaged wrong_position expected=%d found=%d" % (first, found), None
    aead = AESGCM(hkdf(salt, master, b"tgferry v1 object"))
    at, out = 48, b""
    for i in range(first, end):
        sealed_len = len(range(i * SEG, min((i + 1) * SEG, size))) + TAG
        if len(blob) - at < sealed_len:
            return "damaged truncated expected=%d found=%d" % (expected_len, len(blob)), None
        nonce = prefix + i.to_bytes(4, "big") + bytes([1 if i == n - 1 else 0])
        try:
            out += aead.decrypt(nonce, blob[at:at + sealed_len], None)
        except InvalidTag:
            return "damaged auth_failed segment=%d" % i, None
        at += sealed_len
    if at != len(blob):
        return "damaged trailing_data", None
    return "ok", out


def blake3_keyed(key, message):
    """BLAKE3 in keyed_hash mode, 32-byte output."""
    return blake3.blake3(message, key=key).digest()


def content_id(master, size, part_size, plaintext):
    key = hkdf(None, master, b"tgferry v1 content-id")
    parts = max(1, -(-size // part_size))
    macs = b"".join(
        blake3_keyed(key, b"tgferry v1 part" + plaintext[k * part_size:(k + 1) * part_size])
        for k in range(parts))
    msg = b"tgferry v1 content" + size.to_bytes(8, "big") + part_size.to_bytes(8, "big") + macs
    return blake3_keyed(key, msg).hex()


def seal_catalog(master, salt, prefix, plaintext):
    key = hkdf(salt, master, b"tgferry v1 catalog")
    n = segment_count(len(plaintext))
    header = b"TGFC" + bytes([1]) + salt + prefix + len(plaintext).to_bytes(8, "big")
    return header + seal_segments(key, prefix, plaintext, 0, n, n)


def key_file(passphrase, m, t, p, vault_id, kdf_salt, master, wrap_nonce):
    kek = Argon2id(salt=kdf_salt, length=32, iterations=t, lanes=p,
                   memory_cost=m).derive(passphrase.encode())
    wrapped = wrap_nonce + AESGCM(kek).encrypt(
        wrap_nonce, master, b"tgferry-vault v1 key" + vault_id)
    return {
        "format": "tgferry-vault",
        "version": 1,
        "vault_id": vault_id.hex(),
        "kdf": {"alg": "argon2id", "m_cost_kib": m, "t_cost": t, "p_cost": p,
                "salt": kdf_salt.hex()},
        "wrapped_key": wrapped.hex(),
    }


# --- the vectors ------------------------------------------------------------

def fixed(label, n):
    """Fixed 'random' bytes: the first n bytes of SHA-256(label)."""
    return hashlib.sha256(label.encode()).digest()[:n]


def generated(size):
    return bytes((i * 7) % 251 for i in range(size))


MASTER = bytes(range(32))
PASSPHRASE = "correct horse battery staple"
OBJ = {name: (fixed("salt " + name, 32), fixed("prefix " + name, 7))
       for name in ("a", "b")}
GEN_NOTE = "# plaintext byte i = (i * 7) mod 251\n"


OUT = {}  # file name -> text, written (or, with --check, compared) at the end


def write(name, text):
    assert name not in OUT, name
    OUT[name] = text


def write_json(name, obj):
    write(name, json.dumps(obj, indent=2) + "\n")


def object_line(name, size, part_size, salt=None, prefix=None):
    s, p = OBJ[name] if salt is None else (salt, prefix)
    return f"object.{name}: salt={s.hex()} nonce_prefix={p.hex()} size={size} part_size={part_size}\n"


def object_vector(name, doc, size, part_size):
    salt, prefix = OBJ["a"]
    pt = generated(size)
    blobs = part_blobs(MASTER, salt, prefix, size, part_size, pt)
    text = f"# {doc}\n{GEN_NOTE}kind: object\nmaster_key: {MASTER.hex()}\n"
    text += object_line("a", size, part_size)
    text += "plaintext: generated\n"
    text += f"part_count: {len(blobs)}\n"
    for k, blob in enumerate(blobs):
        got = read_part(MASTER, salt, prefix, size, part_size, k, blob)
        assert got == ("ok", pt[k * part_size:(k + 1) * part_size]), (name, k, got[0])
        text += f"part.{k}.len: {len(blob)}\n"
        text += f"part.{k}.sha256: {hashlib.sha256(blob).hexdigest()}\n"
        if len(blob) <= 256:
            text += f"part.{k}.hex: {blob.hex()}\n"
    text += f"content_id: {content_id(MASTER, size, part_size, pt)}\n"
    text += "expect: ok\n"
    write(name + ".vec", text)


def part_fault(name, doc, objects, stored, mutate, read_as, expect):
    """objects: {name: (size, part_size, salt, prefix)}."""
    text = f"# {doc}\n{GEN_NOTE}kind: part_fault\nmaster_key: {MASTER.hex()}\n"
    text += "plaintext: generated\n"
    blobs = {}
    for oname, (size, part_size, salt, prefix) in objects.items():
        text += object_line(oname, size, part_size, salt, prefix)
        blobs[oname] = part_blobs(MASTER, salt, prefix, size, part_size, generated(size))
    sname, spart = stored.split("/")
    honest = blobs[sname][int(spart)]
    text += f"stored: {stored}\n"
    text += f"stored.sha256: {hashlib.sha256(honest).hexdigest()}\n"
    # The reader below must fail the way the vector says.
    blob, m = bytearray(honest), mutate.split(" ")
    if m[0] == "flip":
        blob[int(m[1])] ^= int(m[2], 16)
    elif m[0] == "set":
        blob[int(m[1]):int(m[1]) + len(bytes.fromhex(m[2]))] = bytes.fromhex(m[2])
    elif m[0] == "truncate":
        del blob[int(m[1]):]
    elif m[0] == "append":
        blob += bytes.fromhex(m[1])
    rname, rpart = read_as.split("/")
    rsize, rpart_size, rsalt, rprefix = objects[rname]
    got, _ = read_part(MASTER, rsalt, rprefix, rsize, rpart_size, int(rpart), bytes(blob))
    assert got == expect, (name, got, expect)
    text += f"mutate: {mutate}\n"
    text += f"read_as: {read_as}\n"
    text += f"expect: {expect}\n"
    write(name + ".vec", text)


def catalog_vector(name, doc, blob, plaintext, expect, reproduce):
    text = f"# {doc}\nkind: catalog\nmaster_key: {MASTER.hex()}\n"
    if reproduce:
        salt, prefix = fixed("catalog salt", 32), fixed("catalog prefix", 7)
        text += f"salt: {salt.hex()}\nnonce_prefix: {prefix.hex()}\n"
    text += f"plaintext_hex: {plaintext.hex()}\n"
    text += f"sealed_hex: {blob.hex()}\n"
    text += f"expect: {expect}\n"
    write(name + ".vec", text)


def pack_objects(objects, order):
    """The pack of the given objects' part 0 blobs, back to back, nothing else,
    and each object's (offset, len) in it. objects: {name: (size, part_size)}, all
    of one part, with the salts and prefixes of OBJ."""
    pack, entries = b"", {}
    for name in order:
        salt, prefix = OBJ[name]
        size, part_size = objects[name]
        blobs = part_blobs(MASTER, salt, prefix, size, part_size, generated(size))
        assert len(blobs) == 1, "only objects of one part are packed"
        entries[name] = (len(pack), len(blobs[0]))
        pack += blobs[0]
    return pack, entries


def pack_header(doc, kind, objects, order, pack):
    text = f"# {doc}\n{GEN_NOTE}kind: {kind}\nmaster_key: {MASTER.hex()}\n"
    text += "plaintext: generated\n"
    for name in sorted(objects):
        text += object_line(name, *objects[name])
    text += f"pack: {' '.join(order)}\n"
    text += f"pack.len: {len(pack)}\n"
    text += f"pack.sha256: {hashlib.sha256(pack).hexdigest()}\n"
    return text


def pack_vector(name, doc, objects, order):
    """A pack of objects (each read back from its range, here too)."""
    pack, entries = pack_objects(objects, order)
    text = pack_header(doc, "pack", objects, order, pack)
    if len(pack) <= 256:
        text += f"pack.hex: {pack.hex()}\n"
    for oname in order:
        offset, length = entries[oname]
        salt, prefix = OBJ[oname]
        size, part_size = objects[oname]
        got = read_part(MASTER, salt, prefix, size, part_size, 0, pack[offset:offset + length])
        assert got == ("ok", generated(size)), (name, oname, got[0])
        text += f"entry.{oname}: offset={offset} len={length}\n"
        text += f"content_id.{oname}: {content_id(MASTER, size, part_size, generated(size))}\n"
    text += "expect: ok\n"
    write(name + ".vec", text)


def pack_fault(name, doc, objects, order, offset, length, read_as, expect):
    """Bytes [offset, offset + length) of an honest pack read as read_as's part."""
    pack, _ = pack_objects(objects, order)
    assert 0 <= offset and offset + length <= len(pack), name
    salt, prefix = OBJ[read_as]
    got, _ = read_part(MASTER, salt, prefix, *objects[read_as], 0, pack[offset:offset + length])
    assert got == expect, (name, got, expect)
    text = pack_header(doc, "pack_fault", objects, order, pack)
    text += f"range: offset={offset} len={length}\n"
    text += f"read_as: {read_as}\n"
    text += f"expect: {expect}\n"
    write(name + ".vec", text)


def main():
    # Key files.
    m, t, p = 64, 1, 1
    vault_id, kdf_salt = fixed("vault id", 16), fixed("kdf salt", 16)
    wrap_nonce = fixed("wrap nonce", 12)
    kf = key_file(PASSPHRASE, m, t, p, vault_id, kdf_salt, MASTER, wrap_nonce)
    write_json("keyfile_v1.json", kf)
    write("keyfile_v1.vec",
          "# A version 1 key file with cheap argon2id parameters (m=64 KiB, t=1, p=1).\n"
          "# Unlocks to master_key; create_with(these inputs) rewrites it byte for byte.\n"
          "kind: keyfile\nkeyfile: keyfile_v1.json\n"
          f"passphrase: {PASSPHRASE}\nmaster_key: {MASTER.hex()}\n"
          f"create.vault_id: {vault_id.hex()}\ncreate.kdf_salt: {kdf_salt.hex()}\n"
          f"create.wrap_nonce: {wrap_nonce.hex()}\nexpect: ok\n")
    write("keyfile_wrong_passphrase.vec",
          "# keyfile_v1.json with a passphrase that does not unlock it.\n"
          "kind: keyfile\nkeyfile: keyfile_v1.json\n"
          "passphrase: Correct horse battery staple\nexpect: wrong_passphrase\n")
    variants = [
        ("keyfile_version_2", "A key file from a newer format version: refused, never guessed at.",
         lambda d: d.update(version=2), "unsupported_version found=2"),
        ("keyfile_memory_100gib", "A key file demanding 100 GiB for argon2id: refused before deriving.",
         lambda d: d["kdf"].update(m_cost_kib=100 * MIB), "kdf_params_out_of_bounds"),
        ("keyfile_vault_id_altered", "keyfile_v1.json with one bit of vault_id flipped: the wrapped key is bound to it.",
         lambda d: d.update(vault_id=(bytes([vault_id[0] ^ 1]) + vault_id[1:]).hex()),
         "wrong_passphrase"),
        ("keyfile_unknown_field", "A version 1 key file with a field version 1 does not define.",
         lambda d: d.update(comment="hello"), "invalid_key_file"),
    ]
    for name, doc, change, expect in variants:
        d = json.loads(json.dumps(kf))
        change(d)
        write_json(name + ".json", d)
        write(name + ".vec", f"# {doc}\nkind: keyfile\nkeyfile: {name}.json\n"
                             f"passphrase: {PASSPHRASE}\nexpect: {expect}\n")

    # Objects.
    object_vector("object_empty", "An empty object: one part holding one empty final segment.", 0, MIB)
    object_vector("object_one_byte", "A one-byte object.", 1, MIB)
    object_vector("object_one_segment_exact", "Exactly one full segment (1 MiB) in one part.", SEG, MIB)
    object_vector("object_one_segment_plus_one", "1 MiB + 1 byte in one 2 MiB part: a full segment and a 1-byte final one.", SEG + 1, 2 * MIB)
    object_vector("object_two_parts", "1.5 MiB in parts of 1 MiB: part 0 is one full segment, part 1 the final half segment.", 3 * SEG // 2, MIB)

    # Part faults.
    a, b = OBJ["a"], OBJ["b"]
    two = {"a": (3 * SEG // 2, MIB) + a}
    part_fault("part_flipped_byte", "One ciphertext byte flipped in part 1 (object segment 1).",
               two, "a/1", "flip 1048 01", "a/1", "damaged auth_failed segment=1")
    one = {"a": (1, MIB) + a}
    part_fault("part_header_salt_flipped", "One bit of the header's object salt flipped.",
               one, "a/0", "flip 5 80", "a/0", "damaged wrong_object")
    part_fault("part_version_2", "A part header with format version 2.",
               one, "a/0", "set 4 02", "a/0", "unsupported_version found=2")
    part_fault("part_truncated", "Part 0 cut in the middle of its segment.",
               two, "a/0", "truncate 1048", "a/0",
               f"damaged truncated expected={48 + SEG + TAG} found=1048")
    plus_one = {"a": (SEG + 1, 2 * MIB) + a}
    part_fault("part_final_segment_missing", "A part whose final segment was dropped whole.",
               plus_one, "a/0", f"truncate {48 + SEG + TAG}", "a/0",
               f"damaged truncated expected={48 + SEG + TAG + 1 + TAG} found={48 + SEG + TAG}")
    part_fault("part_trailing_garbage", "A byte appended after the final segment.",
               one, "a/0", "append 00", "a/0", "damaged trailing_data")
    part_fault("parts_swapped_between_objects", "Part 1 of object b stored where part 1 of object a belongs.",
               {"a": (3 * SEG // 2, MIB) + a, "b": (3 * SEG // 2, MIB) + b}, "b/1", "none", "a/1",
               "damaged wrong_object")
    part_fault("part_reordered", "Part 1 of an object presented as its part 0.",
               two, "a/1", "none", "a/0", "damaged wrong_position expected=0 found=1")
    part_fault("part_presented_as_final",
               "Part 0 of a two-part object read as the only part of a 1 MiB object with the same salt:\n"
               "# its segment was sealed without the final flag.",
               {"a": (3 * SEG // 2, MIB) + a, "c": (SEG, MIB) + a}, "a/0", "none", "c/0",
               "damaged auth_failed segment=0")

    # Catalogs.
    cat = json.dumps({"version": 1, "objects": {"0f": {"size": 3}}}, separators=(",", ":")).encode()
    blob = seal_catalog(MASTER, fixed("catalog salt", 32), fixed("catalog prefix", 7), cat)
    catalog_vector("catalog_small", "A small sealed catalog (one final segment).", blob, cat, "ok", True)
    flipped = bytearray(blob)
    flipped[60] ^= 0x01
    catalog_vector("catalog_flipped_byte", "catalog_small with one ciphertext byte flipped.",
                   bytes(flipped), cat, "damaged auth_failed segment=0", False)
    catalog_vector("catalog_truncated", "catalog_small without its last byte.",
                   blob[:-1], cat, f"damaged truncated expected={len(blob)} found={len(blob) - 1}", False)
    v2 = bytearray(blob)
    v2[4] = 2
    catalog_vector("catalog_version_2", "catalog_small claiming format version 2.",
                   bytes(v2), cat, "unsupported_version found=2", False)

    # Packs: single-part objects' part blobs back to back (docs/format.md, "Packs").
    small = {"a": (5, MIB), "b": (37, MIB)}
    pack_vector("pack_two_objects", "Two small objects in one pack: a at offset 0, b right after it.",
                small, ["a", "b"])
    pack_vector("pack_one_object", "A pack holding one object: its range is the whole pack.",
                {"a": (1000, MIB)}, ["a"])
    pack_vector("pack_object_at_end",
                "A 3-byte object, then one of exactly 1 MiB (a whole 1 MiB part: one full final\n"
                "# segment) whose range ends exactly at the end of the pack.",
                {"a": (3, MIB), "b": (SEG, MIB)}, ["a", "b"])
    pack_vector("pack_empty_object",
                "A 5-byte object, then an empty one (64 bytes: header and one empty final\n"
                "# segment) that ends the pack.",
                {"a": (5, MIB), "b": (0, MIB)}, ["a", "b"])
    pack_vector("pack_multi_segment_object",
                "In parts of 512 MiB (tgferry's default), an object of 2 MiB + 5 bytes (one part of\n"
                "# three segments, the last 5 bytes) followed in its pack by a 3-byte object.",
                {"a": (2 * SEG + 5, 512 * MIB), "b": (3, 512 * MIB)}, ["a", "b"])
    two_pack, entries = pack_objects(small, ["a", "b"])
    (a_off, a_len), (b_off, b_len) = entries["a"], entries["b"]
    pack_fault("pack_range_read_as_wrong_object",
               "pack_two_objects: object b's range read with object a's salt and params.",
               small, ["a", "b"], b_off, b_len, "a", "damaged wrong_object")
    pack_fault("pack_range_one_byte_long",
               "pack_two_objects: object a's range with one byte more (the first of b's header).",
               small, ["a", "b"], a_off, a_len + 1, "a", "damaged trailing_data")
    pack_fault("pack_range_one_byte_short",
               "pack_two_objects: object a's range without its last byte.",
               small, ["a", "b"], a_off, a_len - 1, "a",
               f"damaged truncated expected={a_len} found={a_len - 1}")
    pack_fault("pack_range_shifted",
               "pack_two_objects: object b's range started one byte early (a's last tag byte).",
               small, ["a", "b"], b_off - 1, b_len, "b", "damaged bad_magic")
    assert len(two_pack) == a_len + b_len

    if sys.argv[1:] == ["--check"]:
        check()
    else:
        assert not sys.argv[1:], "usage: reference_impl.py [--check]"
        for fname, text in OUT.items():
            with open(os.path.join(HERE, fname), "w", newline="\n") as f:
                f.write(text)


def check():
    """Compares what main() computed with the files on disk; exits 1 on a difference."""
    on_disk = {f for f in os.listdir(HERE) if f.endswith((".vec", ".json"))}
    bad = sorted(on_disk - set(OUT))
    bad = [f"{f}: on disk, but not written by this script" for f in bad]
    for fname, text in sorted(OUT.items()):
        path = os.path.join(HERE, fname)
        if not os.path.exists(path):
            bad.append(f"{fname}: missing")
            continue
        with open(path, newline="") as f:
            if f.read() != text:
                bad.append(f"{fname}: differs from what the reference implementation computes")
    if bad:
        print("\n".join(bad), file=sys.stderr)
        sys.exit(1)
    print(f"reference implementation: all {len(OUT)} vector files reproduced")


if __name__ == "__main__":
    main()
