// Command read_tiles checks a mirror of a Verdict log's C2SP tlog-tiles with Go's
// golang.org/x/mod/sumdb/note and sumdb/tlog, implementations written outside this project.
//
//	read_tiles VKEY DIR [OLD_CHECKPOINT]
//
// DIR holds `checkpoint` and the tiles at their C2SP paths (tile/<L>/<N>[.p/<W>],
// tile/entries/<N>[.p/<W>]). note.Open must verify the checkpoint under VKEY; tlog.TileHashReader
// reads the hash tiles (it names them with tlog.Tile.Path, whose index encoding is the C2SP one)
// and verifies each against the checkpoint's tree; tlog.TreeHash must give the checkpoint's root;
// every entry of every entry bundle must hash (tlog.RecordHash) to its leaf hash; inclusion proofs
// (tlog.ProveRecord, CheckRecord) must verify for a sample of entries; and with OLD_CHECKPOINT, a
// consistency proof from its tree (tlog.ProveTree, CheckTree) must verify.
// Prints "ok: ..." and exits 0, or prints the failure and exits 1.
//
// Build (Debian's golang-go and golang-golang-x-mod-dev, GOPATH mode):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o read_tiles read_tiles.go
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

func openCheckpoint(vkey string, path string) (int64, tlog.Hash) {
	text, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	verifier, err := note.NewVerifier(vkey)
	if err != nil {
		fail("vkey: %v", err)
	}
	n, err := note.Open(text, note.VerifierList(verifier))
	if err != nil {
		fail("checkpoint: %v", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != verifier.Name() {
		fail("checkpoint: origin is not the key's name")
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		fail("checkpoint: bad size %q", lines[1])
	}
	raw, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(raw) != tlog.HashSize {
		fail("checkpoint: bad root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], raw)
	return size, root
}

// dirReader serves tiles from a C2SP mirror: tlog names them tile/8/<L>/<N>[.p/<W>] (the height
// in the path, entry tiles as "data"); C2SP drops the height and calls them "entries".
type dirReader struct{ dir string }

func (r dirReader) Height() int { return 8 }

func c2spPath(t tlog.Tile) string {
	p := strings.TrimPrefix(t.Path(), "tile/8/")
	if strings.HasPrefix(p, "data/") {
		p = "entries/" + strings.TrimPrefix(p, "data/")
	}
	return filepath.Join("tile", p)
}

func (r dirReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		data, err := os.ReadFile(filepath.Join(r.dir, c2spPath(t)))
		if err != nil {
			return nil, err
		}
		out[i] = data
	}
	return out, nil
}

func (r dirReader) SaveTiles(tiles []tlog.Tile, data [][]byte) {}

func entries(bundle []byte) [][]byte {
	var out [][]byte
	for len(bundle) > 0 {
		if len(bundle) < 2 {
			fail("entry bundle: truncated length")
		}
		n := int(binary.BigEndian.Uint16(bundle))
		if len(bundle) < 2+n {
			fail("entry bundle: truncated entry")
		}
		out = append(out, bundle[2:2+n])
		bundle = bundle[2+n:]
	}
	return out
}

func main() {
	if len(os.Args) != 3 && len(os.Args) != 4 {
		fail("usage: read_tiles VKEY DIR [OLD_CHECKPOINT]")
	}
	vkey, dir := os.Args[1], os.Args[2]
	size, root := openCheckpoint(vkey, filepath.Join(dir, "checkpoint"))
	if size == 0 { // tlog's empty tree hash is zeros; RFC 6962's (and Verdict's) is SHA-256 of nothing
		if root != tlog.Hash(sha256.Sum256(nil)) {
			fail("empty tree: root is not SHA-256()")
		}
		fmt.Println("ok: empty tree")
		return
	}
	reader := dirReader{dir}
	thr := tlog.TileHashReader(tlog.Tree{N: size, Hash: root}, reader)
	got, err := tlog.TreeHash(size, thr)
	if err != nil || got != root {
		fail("tree hash of size %d: %v (got %v, want %v)", size, err, got, root)
	}
	indexes := make([]int64, size)
	for i := range indexes {
		indexes[i] = tlog.StoredHashIndex(0, int64(i))
	}
	leaves, err := thr.ReadHashes(indexes)
	if err != nil {
		fail("leaf hashes: %v", err)
	}
	for n := int64(0); n*256 < size; n++ {
		w := size - n*256
		if w > 256 {
			w = 256
		}
		t := tlog.Tile{H: 8, L: -1, N: n, W: int(w)}
		data, err := reader.ReadTiles([]tlog.Tile{t})
		if err != nil {
			fail("entry bundle %d: %v", n, err)
		}
		bundle := entries(data[0])
		if int64(len(bundle)) != w {
			fail("entry bundle %d holds %d entries, want %d", n, len(bundle), w)
		}
		for i, e := range bundle {
			if tlog.RecordHash(e) != leaves[n*256+int64(i)] {
				fail("entry %d does not hash to its leaf", n*256+int64(i))
			}
		}
	}
	for _, i := range []int64{0, 1, 255, 256, 257, size / 2, size - 2, size - 1} {
		if i < 0 || i >= size {
			continue
		}
		proof, err := tlog.ProveRecord(size, i, thr)
		if err != nil {
			fail("prove entry %d: %v", i, err)
		}
		if err := tlog.CheckRecord(proof, size, root, i, leaves[i]); err != nil {
			fail("entry %d: %v", i, err)
		}
	}
	if len(os.Args) == 4 {
		oldSize, oldRoot := openCheckpoint(vkey, os.Args[3])
		if oldSize > 0 {
			proof, err := tlog.ProveTree(size, oldSize, thr)
			if err != nil {
				fail("prove %d -> %d: %v", oldSize, size, err)
			}
			if err := tlog.CheckTree(proof, size, root, oldSize, oldRoot); err != nil {
				fail("consistency %d -> %d: %v", oldSize, size, err)
			}
		}
	}
	fmt.Printf("ok: %d entries, tree hash and tiles verified\n", size)
}
