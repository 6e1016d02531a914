// Command gen_vectors writes the RFC 6962 Merkle tree vectors in rfc6962_vectors.json (to stdout).
//
// Every hash, root and proof comes from golang.org/x/mod/sumdb/tlog, an implementation written
// outside this project: leaves are tlog.RecordHash, the tree is built with tlog.StoredHashes, roots
// come from tlog.TreeHash, proofs from tlog.ProveRecord and tlog.ProveTree. The generator checks
// that tlog.CheckRecord / tlog.CheckTree accept every proof it emits as valid and reject every
// mutation it emits with want_err; it panics otherwise, so a vector file exists only if tlog agreed.
//
// Entry i of the log is the ASCII bytes "entry-<i>". See README.md for how to run it.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const maxSize = 1000

type vector struct {
	Desc    string `json:"desc"`
	Input   any    `json:"input"`
	Want    any    `json:"want,omitempty"`
	WantErr string `json:"want_err,omitempty"`
}

type hashLeafInput struct {
	Op       string `json:"op"`
	EntryHex string `json:"entry_hex"`
}

type hashChildrenInput struct {
	Op    string `json:"op"`
	Left  string `json:"left"`
	Right string `json:"right"`
}

type rootInput struct {
	Op   string `json:"op"`
	Size int64  `json:"size"`
}

type inclusionInput struct {
	Op    string `json:"op"`
	Index int64  `json:"index"`
	Size  int64  `json:"size"`
}

type consistencyInput struct {
	Op      string `json:"op"`
	OldSize int64  `json:"old_size"`
	NewSize int64  `json:"new_size"`
}

type verifyInclusionInput struct {
	Op       string   `json:"op"`
	Index    int64    `json:"index"`
	Size     int64    `json:"size"`
	LeafHash string   `json:"leaf_hash"`
	Proof    []string `json:"proof"`
	Root     string   `json:"root"`
}

type verifyConsistencyInput struct {
	Op      string   `json:"op"`
	OldSize int64    `json:"old_size"`
	NewSize int64    `json:"new_size"`
	OldRoot string   `json:"old_root"`
	NewRoot string   `json:"new_root"`
	Proof   []string `json:"proof"`
}

var (
	stored  []tlog.Hash
	reader  = tlog.HashReaderFunc(readHashes)
	vectors []vector
)

func readHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, index := range indexes {
		if index >= int64(len(stored)) {
			return nil, fmt.Errorf("hash %d not stored", index)
		}
		out[i] = stored[index]
	}
	return out, nil
}

func must[T any](value T, err error) T {
	if err != nil {
		panic(err)
	}
	return value
}

func entry(i int64) []byte { return []byte(fmt.Sprintf("entry-%d", i)) }

func hexes(hashes []tlog.Hash) []string {
	out := make([]string, 0, len(hashes))
	for _, h := range hashes {
		out = append(out, hex.EncodeToString(h[:]))
	}
	return out
}

func hx(h tlog.Hash) string { return hex.EncodeToString(h[:]) }

func root(size int64) tlog.Hash { return must(tlog.TreeHash(size, reader)) }

func flipBit(proof []tlog.Hash, i, bit int) []tlog.Hash {
	out := append([]tlog.Hash(nil), proof...)
	out[i][bit/8] ^= 1 << (bit % 8)
	return out
}

func add(desc string, input any, want any, wantErr string) {
	vectors = append(vectors, vector{Desc: desc, Input: input, Want: want, WantErr: wantErr})
}

// checkRFC6962Hashing confirms tlog hashes exactly as RFC 6962 §2.1 says:
// leaf = SHA-256(0x00 || d), node = SHA-256(0x01 || left || right).
func checkRFC6962Hashing() {
	for _, data := range [][]byte{{}, entry(0), entry(999)} {
		if tlog.RecordHash(data) != sha256.Sum256(append([]byte{0x00}, data...)) {
			panic("tlog.RecordHash is not SHA-256(0x00 || data)")
		}
	}
	l, r := tlog.RecordHash(entry(0)), tlog.RecordHash(entry(1))
	if tlog.NodeHash(l, r) != sha256.Sum256(bytes.Join([][]byte{{0x01}, l[:], r[:]}, nil)) {
		panic("tlog.NodeHash is not SHA-256(0x01 || left || right)")
	}
}

func hashVectors() {
	for _, data := range [][]byte{{}, entry(0), entry(1), entry(999), {0x00, 0x01, 0xff}} {
		add(fmt.Sprintf("hash-leaf %q", data), hashLeafInput{"hash_leaf", hex.EncodeToString(data)},
			hx(tlog.RecordHash(data)), "")
	}
	l, r := tlog.RecordHash(entry(0)), tlog.RecordHash(entry(1))
	add("hash-children leaf(entry-0) leaf(entry-1)", hashChildrenInput{"hash_children", hx(l), hx(r)},
		hx(tlog.NodeHash(l, r)), "")
	add("hash-children leaf(entry-1) leaf(entry-0)", hashChildrenInput{"hash_children", hx(r), hx(l)},
		hx(tlog.NodeHash(r, l)), "")
}

func sizes() []int64 {
	out := []int64{}
	for n := int64(1); n <= 70; n++ {
		out = append(out, n)
	}
	return append(out, 127, 128, 129, maxSize)
}

func rootVectors() {
	// RFC 6962 §2.1: MTH({}) = SHA-256(). tlog defines the empty tree's hash as 32 zero bytes instead,
	// so this one value is the RFC's, not tlog's.
	if root(0) != (tlog.Hash{}) {
		panic("tlog.TreeHash(0) is no longer all zeros; revisit the size-0 vector")
	}
	empty := sha256.Sum256(nil)
	add("root size 0 (RFC 6962 §2.1 MTH({}) = SHA-256(); tlog.TreeHash(0) is all zeros)",
		rootInput{"root_hash", 0}, hex.EncodeToString(empty[:]), "")
	for _, n := range sizes() {
		add(fmt.Sprintf("root size %d", n), rootInput{"root_hash", n}, hx(root(n)), "")
	}
}

// uniqueSorted keeps the values v with lo <= v <= hi, sorted, without duplicates.
func uniqueSorted(values []int64, lo, hi int64) []int64 {
	seen := map[int64]bool{}
	out := []int64{}
	for _, v := range values {
		if lo <= v && v <= hi && !seen[v] {
			seen[v] = true
			out = append(out, v)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

func inclusionVectors() {
	for _, n := range sizes() {
		indexes := []int64{0, (n * 7) / 13, n - 1}
		if n <= 16 {
			for i := int64(0); i < n; i++ {
				indexes = append(indexes, i)
			}
		}
		for _, i := range uniqueSorted(indexes, 0, n-1) {
			proof := must(tlog.ProveRecord(n, i, reader))
			if err := tlog.CheckRecord(proof, n, root(n), i, tlog.RecordHash(entry(i))); err != nil {
				panic(err)
			}
			add(fmt.Sprintf("inclusion-proof index %d size %d", i, n), inclusionInput{"inclusion_proof", i, n},
				hexes(proof), "")
		}
	}
}

func consistencyVectors() {
	for _, n := range sizes() {
		olds := []int64{(n * 5) / 7, n - 1}
		if n > 16 {
			olds = append(olds, int64(1)<<(bits.Len64(uint64(n))-1)) // the largest power of 2 <= n
		}
		if n <= 16 {
			for m := int64(1); m <= n; m++ {
				olds = append(olds, m)
			}
		}
		for _, m := range uniqueSorted(olds, 1, n) {
			proof := must(tlog.ProveTree(n, m, reader))
			if err := tlog.CheckTree(proof, n, root(n), m, root(m)); err != nil {
				panic(err)
			}
			add(fmt.Sprintf("consistency-proof %d to %d", m, n), consistencyInput{"consistency_proof", m, n},
				hexes(proof), "")
		}
	}
}

// Mutations of sizes can leave a proof valid: an RFC 9162 proof binds the sizes only through the shape
// of the path, and some neighbouring sizes share it (index 0 of size 3 and of size 4, say). Those are
// emitted as valid vectors, flagged in desc, so the Python verifier must agree with tlog on them too.
var mayStillVerify = map[string]bool{
	"wrong-size+1": true, "wrong-size-1": true,
	"wrong-old-size+1": true, "wrong-old-size-1": true, "wrong-new-size+1": true, "wrong-new-size-1": true,
}

func emitVerify(op, base, mutation string, input any, err error) {
	desc := base
	if mutation != "" {
		desc = base + ": " + mutation
	}
	switch {
	case err == nil && mutation == "":
		add(desc, input, true, "")
	case err == nil && mayStillVerify[mutation]:
		add(desc+" (still verifies: same proof shape)", input, true, "")
	case err == nil:
		panic("tlog accepted mutation " + desc)
	case mutation == "":
		panic(fmt.Sprintf("tlog rejected %s: %v", desc, err))
	case op == "verify_inclusion":
		add(desc, input, nil, "InclusionProofError")
	default:
		add(desc, input, nil, "ConsistencyProofError")
	}
}

type inclusionCase struct {
	index, size int64
	leaf        tlog.Hash
	proof       []tlog.Hash
	root        tlog.Hash
}

func (c inclusionCase) emit(base, mutation string) {
	input := verifyInclusionInput{"verify_inclusion", c.index, c.size, hx(c.leaf), hexes(c.proof), hx(c.root)}
	emitVerify("verify_inclusion", base, mutation, input, tlog.CheckRecord(c.proof, c.size, c.root, c.index, c.leaf))
}

func verifyInclusionVectors() {
	cases := [][2]int64{
		{0, 1}, {0, 2}, {1, 2}, {2, 3}, {4, 5}, {0, 8}, {5, 8}, {3, 7}, {6, 7}, {10, 13}, {63, 64}, {64, 65},
		{69, 70}, {127, 128}, {128, 129}, {500, 1000}, {999, 1000},
	}
	for _, ic := range cases {
		i, n := ic[0], ic[1]
		good := inclusionCase{i, n, tlog.RecordHash(entry(i)), must(tlog.ProveRecord(n, i, reader)), root(n)}
		base := fmt.Sprintf("verify-inclusion index %d size %d", i, n)
		good.emit(base, "")

		c := good
		c.leaf = tlog.RecordHash(entry(i + 1))
		c.emit(base, "wrong-leaf")
		c = good
		c.leaf = sha256.Sum256(entry(i))
		c.emit(base, "leaf-without-0x00-prefix")
		if n > 1 {
			c = good
			c.index = i + 1
			if c.index == n {
				c.index = i - 1
			}
			c.emit(base, "wrong-index")
		}
		c = good
		c.index = n
		c.emit(base, "index-equals-size")
		c = good
		c.index = -1
		c.emit(base, "negative-index")
		c = good
		c.size = n + 1
		c.emit(base, "wrong-size+1")
		if n-1 > i {
			c = good
			c.size = n - 1
			c.emit(base, "wrong-size-1")
		}
		c = good
		c.root[31] ^= 1
		c.emit(base, "modified-root-bit-248")
		c = good
		c.proof = append(append([]tlog.Hash(nil), good.proof...), good.root)
		c.emit(base, "extended-proof")
		if len(good.proof) > 0 {
			c = good
			c.proof = good.proof[:len(good.proof)-1]
			c.emit(base, "truncated-proof")
		}
		if len(good.proof) > 1 {
			c = good
			c.proof = []tlog.Hash{}
			c.emit(base, "empty-proof")
			c = good
			c.proof = reversed(good.proof)
			c.emit(base, "reversed-proof")
		}
		for _, j := range flipPositions(len(good.proof)) {
			bit := (37*j + 3) % 256
			c = good
			c.proof = flipBit(good.proof, j, bit)
			c.emit(base, fmt.Sprintf("modified-proof[%d]-bit-%d", j, bit))
		}
	}
}

type consistencyCase struct {
	oldSize, newSize int64
	oldRoot, newRoot tlog.Hash
	proof            []tlog.Hash
}

func (c consistencyCase) emit(base, mutation string) {
	input := verifyConsistencyInput{
		"verify_consistency", c.oldSize, c.newSize, hx(c.oldRoot), hx(c.newRoot), hexes(c.proof),
	}
	err := tlog.CheckTree(c.proof, c.newSize, c.newRoot, c.oldSize, c.oldRoot)
	emitVerify("verify_consistency", base, mutation, input, err)
}

func verifyConsistencyVectors() {
	cases := [][2]int64{
		{1, 1}, {1, 2}, {2, 3}, {3, 7}, {4, 7}, {6, 8}, {7, 8}, {8, 8}, {5, 13}, {15, 16}, {16, 17}, {32, 70},
		{64, 127}, {127, 128}, {128, 129}, {512, 1000}, {999, 1000},
	}
	for _, cc := range cases {
		m, n := cc[0], cc[1]
		good := consistencyCase{m, n, root(m), root(n), must(tlog.ProveTree(n, m, reader))}
		base := fmt.Sprintf("verify-consistency %d to %d", m, n)
		good.emit(base, "")

		c := good
		if m != n {
			c.oldRoot, c.newRoot = good.newRoot, good.oldRoot
			c.emit(base, "swapped-roots")
			c = good
			c.oldSize, c.newSize = n, m
			c.emit(base, "swapped-sizes")
		}
		c = good
		c.oldRoot[0] ^= 0x80
		c.emit(base, "modified-old-root-bit-7")
		c = good
		c.newRoot[0] ^= 0x80
		c.emit(base, "modified-new-root-bit-7")
		c = good
		c.oldSize = 0
		c.emit(base, "old-size-0")
		if m > 1 {
			c = good
			c.oldSize = m - 1
			c.emit(base, "wrong-old-size-1")
		}
		if m < n {
			c = good
			c.oldSize = m + 1
			c.emit(base, "wrong-old-size+1")
			c = good
			c.newSize = n - 1
			c.emit(base, "wrong-new-size-1")
		}
		c = good
		c.newSize = n + 1
		c.emit(base, "wrong-new-size+1")
		c = good
		c.proof = append(append([]tlog.Hash(nil), good.proof...), good.newRoot)
		c.emit(base, "extended-proof")
		if m&(m-1) == 0 && m < n {
			// RFC 9162 §2.1.4.2 step 2 prepends first_hash itself; a proof that already holds it is too long.
			c = good
			c.proof = append([]tlog.Hash{good.oldRoot}, good.proof...)
			c.emit(base, "old-root-prepended")
		}
		if len(good.proof) > 0 {
			c = good
			c.proof = good.proof[:len(good.proof)-1]
			c.emit(base, "truncated-proof")
		}
		if len(good.proof) > 1 {
			c = good
			c.proof = []tlog.Hash{}
			c.emit(base, "empty-proof")
			c = good
			c.proof = reversed(good.proof)
			c.emit(base, "reversed-proof")
		}
		for _, j := range flipPositions(len(good.proof)) {
			bit := (37*j + 3) % 256
			c = good
			c.proof = flipBit(good.proof, j, bit)
			c.emit(base, fmt.Sprintf("modified-proof[%d]-bit-%d", j, bit))
		}
	}
}

// flipPositions is every position of a short proof, and the first, middle and last of a long one.
func flipPositions(n int) []int {
	if n <= 4 {
		out := make([]int, n)
		for j := range out {
			out[j] = j
		}
		return out
	}
	return []int{0, n / 2, n - 1}
}

func reversed(proof []tlog.Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(proof))
	for i, h := range proof {
		out[len(proof)-1-i] = h
	}
	return out
}

func main() {
	for i := int64(0); i < maxSize; i++ {
		stored = append(stored, must(tlog.StoredHashes(i, entry(i), reader))...)
	}
	if int64(len(stored)) != tlog.StoredHashCount(maxSize) {
		panic("stored hash count mismatch")
	}
	checkRFC6962Hashing()
	hashVectors()
	rootVectors()
	inclusionVectors()
	consistencyVectors()
	verifyInclusionVectors()
	verifyConsistencyVectors()
	// One vector per line: diffs stay readable and the file small.
	lines := make([]string, len(vectors))
	for i, v := range vectors {
		lines[i] = string(must(json.Marshal(v)))
	}
	fmt.Fprintf(os.Stdout, "[\n%s\n]\n", strings.Join(lines, ",\n"))
}
