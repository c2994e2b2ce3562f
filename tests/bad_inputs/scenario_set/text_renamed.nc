scenario,event,kind
0,0,ramp_up
