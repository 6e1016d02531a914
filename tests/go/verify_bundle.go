// Command verify_bundle checks Verdict's proof bundles and consistency proofs with Go's
// golang.org/x/mod/sumdb/note and sumdb/tlog, implementations written outside this project.
//
//	verify_bundle bundle VKEY BUNDLE.json
//	verify_bundle consistency VKEY OLD_CHECKPOINT NEW_CHECKPOINT PROOF.json
//
// bundle: note.Open must verify the checkpoint under VKEY, and tlog.CheckRecord every entry's
// inclusion proof against the checkpoint's root. consistency: both checkpoints must verify, and
// tlog.CheckTree the proof ({"proof": [base64, ...]}) from the old tree to the new one.
// Prints "ok" and exits 0, or prints the failure and exits 1.
//
// Build (Debian's golang-go and golang-golang-x-mod-dev, GOPATH mode):
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go build -o verify_bundle verify_bundle.go
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

type bundle struct {
	Format     string `json:"format"`
	Checkpoint string `json:"checkpoint"`
	Entries    []struct {
		Index          int64    `json:"index"`
		Entry          string   `json:"entry"`
		InclusionProof []string `json:"inclusion_proof"`
	} `json:"entries"`
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

// openCheckpoint verifies a C2SP checkpoint note and returns its size and root.
func openCheckpoint(vkey string, text []byte) (int64, tlog.Hash) {
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

func hashes(encoded []string) []tlog.Hash {
	out := make([]tlog.Hash, len(encoded))
	for i, text := range encoded {
		raw, err := base64.StdEncoding.DecodeString(text)
		if err != nil || len(raw) != tlog.HashSize {
			fail("proof hash %d is not a base64 SHA-256 hash", i)
		}
		copy(out[i][:], raw)
	}
	return out
}

func read(path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	return data
}

func main() {
	if len(os.Args) == 4 && os.Args[1] == "bundle" {
		var b bundle
		if err := json.Unmarshal(read(os.Args[3]), &b); err != nil {
			fail("bundle: %v", err)
		}
		if b.Format != "verdict-proof/v1" || len(b.Entries) == 0 {
			fail("bundle: not a verdict-proof/v1 bundle with entries")
		}
		size, root := openCheckpoint(os.Args[2], []byte(b.Checkpoint))
		for _, e := range b.Entries {
			data, err := base64.StdEncoding.DecodeString(e.Entry)
			if err != nil {
				fail("entry %d: not base64", e.Index)
			}
			proof := tlog.RecordProof(hashes(e.InclusionProof))
			if err := tlog.CheckRecord(proof, size, root, e.Index, tlog.RecordHash(data)); err != nil {
				fail("entry %d: %v", e.Index, err)
			}
		}
		fmt.Printf("ok: %d entries in tree of size %d\n", len(b.Entries), size)
		return
	}
	if len(os.Args) == 6 && os.Args[1] == "consistency" {
		oldSize, oldRoot := openCheckpoint(os.Args[2], read(os.Args[3]))
		newSize, newRoot := openCheckpoint(os.Args[2], read(os.Args[4]))
		var p struct {
			Proof []string `json:"proof"`
		}
		if err := json.Unmarshal(read(os.Args[5]), &p); err != nil {
			fail("proof: %v", err)
		}
		if err := tlog.CheckTree(tlog.TreeProof(hashes(p.Proof)), newSize, newRoot, oldSize, oldRoot); err != nil {
			fail("consistency %d -> %d: %v", oldSize, newSize, err)
		}
		fmt.Printf("ok: size %d is consistent with size %d\n", newSize, oldSize)
		return
	}
	fail("usage: verify_bundle bundle VKEY BUNDLE.json | consistency VKEY OLD NEW PROOF.json")
}
