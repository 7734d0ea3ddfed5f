module fabricexamples

go 1.19
