// Command kstatus computes the kstatus result (sigs.k8s.io/cli-utils, the library Flux
// and kpt use to decide whether an applied object is Current, InProgress or Failed) for
// Kubernetes objects.
//
//	kstatus < objects.json
//
// stdin holds a JSON array of objects; stdout gets a JSON array of {"status", "message"},
// one per object, in order.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	kjson "k8s.io/apimachinery/pkg/util/json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type result struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(2)
	}
	// apimachinery's JSON decoder keeps integers as int64, as the API server's client
	// does; encoding/json would make every number a float64, which kstatus refuses.
	var objects []map[string]any
	if err := kjson.Unmarshal(input, &objects); err != nil {
		fmt.Fprintln(os.Stderr, "stdin:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(objects))
	for index, object := range objects {
		computed, err := status.Compute(&unstructured.Unstructured{Object: object})
		if err != nil {
			fmt.Fprintf(os.Stderr, "object %d: %v\n", index, err)
			os.Exit(1)
		}
		results = append(results, result{Status: computed.Status.String(), Message: computed.Message})
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
