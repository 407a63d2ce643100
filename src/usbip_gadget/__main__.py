from usbip_gadget.cli import main

raise SystemExit(main())
