// Command calls calls strings.ToUpper and nothing else of package strings:
// the program govulncheck scans in the vulndb tests.
package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	fmt.Println(strings.ToUpper(os.Args[0]))
}
