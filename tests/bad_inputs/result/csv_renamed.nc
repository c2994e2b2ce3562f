module,bus,count
bess-0.5,2,1
