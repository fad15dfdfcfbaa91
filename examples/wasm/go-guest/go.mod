module example.com/otap-df-guest

go 1.24
