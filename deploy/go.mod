module github.com/vigie-sante/vigie/deploy

go 1.26.0

toolchain go1.27.3
