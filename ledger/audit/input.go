package audit

import (
	"bytes"
	"encoding/base64"
	"errors"

	"github.com/vigie-sante/vigie/ledger/verify"
)

// ReadReceipt returns the signed note of a receipt as a person hands it
// over: the note as it is, or in base64 (as the JSON API returns it), with
// white space around. It does not verify the note ([CheckReceipt] does).
func ReadReceipt(b []byte) ([]byte, error) {
	t := bytes.TrimSpace(b)
	if isReceipt(t) {
		// A note ends with exactly one newline: blank lines after it
		// (an editor's, a copy's) are not part of it.
		return append(bytes.Clone(t), '\n'), nil
	}
	d, err := base64.StdEncoding.DecodeString(string(t))
	if err != nil || !isReceipt(d) {
		return nil, errors.New("not a receipt: want a signed note starting with \"" + verify.ReceiptHeader + "\" or \"" + verify.ReceiptHeaderV2 + "\", or its base64")
	}
	return d, nil
}

// isReceipt reports whether b starts as a receipt of version 1 or 2.
func isReceipt(b []byte) bool {
	return bytes.HasPrefix(b, []byte(verify.ReceiptHeader+"\n")) || bytes.HasPrefix(b, []byte(verify.ReceiptHeaderV2+"\n"))
}
