module github.com/kubetrade/kubetrade/strategies

go 1.26

toolchain go1.26.8

require (
	github.com/knqyf263/go-plugin v0.9.0
	google.golang.org/protobuf v1.30.0
)

require github.com/tetratelabs/wazero v1.9.0 // indirect
