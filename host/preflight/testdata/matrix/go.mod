module example.test/matrix

go 1.26

require example.test/dep v1.0.0

replace example.test/dep => ../dep/v1
